"""The joint measurement model on the analysis frame: who agrees with whom (E2) and E1 net of
the reference (groups ``agreement``, ``agreement_matrix``, ``net_e1``, and ``e1_comparison``
when an E1 results file of the same data is given), alignment with value-added (E3,
``value_added``), ensembles and the majority vote (E4, ``ensembles``, ``majority_vote``), and
both again at a stated design (``*_at_design``)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Self

import numpy as np
import pandas as pd
import xarray as xr
from pymc_extras.prior import Prior

from misalign.data.ensembles import ensemble_weights
from misalign.data.measurement import MeasurementData
from misalign.models.base import SAMPLE_DIMS
from misalign.models.measurement import MeasurementModel
from misalign.models.options import SamplerConfig

from .agreement import NET_COMPONENTS, agreement, net_e1, upper_pairs
from .analysis import AnalysisResults
from .ensembles import ensembles
from .impact import value_added
from .majority import majority_vote
from .measurement_sections import sections as measurement_sections
from .measurement_tables import ensemble_frame, va_frame
from .summaries import HDI_PROB, hdi, interval_frame

COMPARISON = "e1_comparison"
VALUE_ADDED = "value_added"  # E3, when the data have value-added
ENSEMBLES = "ensembles"  # E4
MAJORITY_GROUP = "majority_vote"  # E4's vote, by posterior predictive replication
# E3 and E4 again for a stated design (n lessons × m segments per teacher), when asked for.
DESIGN_GROUPS = {VALUE_ADDED: "value_added_at_design", ENSEMBLES: "ensembles_at_design",
                 MAJORITY_GROUP: "majority_vote_at_design"}


def stated_design(design: pd.DataFrame, lessons: int, segments: int) -> pd.DataFrame:
    """The data's design per task with every teacher scored over ``lessons`` lessons of
    ``segments`` segments each (the replicates and the experts per cell stay the data's)."""
    if lessons < 1 or segments < 1:
        raise ValueError(f"a design needs at least one lesson and one segment, not "
                         f"{lessons} × {segments}")
    return design.assign(n=float(lessons), m=float(segments))


class MeasurementResults(AnalysisResults):
    model_class = MeasurementModel
    derived_groups = ("agreement", "agreement_matrix", "net_e1")
    model: MeasurementModel

    @classmethod
    def _agreement(cls, model: MeasurementModel) -> xr.Dataset:
        return agreement(model.posterior, model.data.design(), model.source_llm,
                         model.source_family)

    @classmethod
    def compute_derived(cls, model: MeasurementModel) -> dict[str, xr.Dataset]:
        ag = cls._agreement(model)
        corr = ag["corr_sources"]
        h = hdi(corr)
        matrix = xr.Dataset({"mean": corr.mean(SAMPLE_DIMS),
                             "lower": h.sel(ci_bound="lower", drop=True),
                             "upper": h.sel(ci_bound="upper", drop=True)})
        net = net_e1(model.posterior, model.data.design())
        overall = net["variance"].mean("task")
        net["variance_all_tasks"] = overall
        net["share_all_tasks"] = overall / overall.sum("component")
        out = {"agreement": ag.drop_vars("corr_sources"), "agreement_matrix": matrix,
               "net_e1": net}
        va = value_added(model.posterior, model.data.design())
        if va is not None:
            out[VALUE_ADDED] = va
        out[ENSEMBLES] = cls._ensembles(model, ag, va, model.data.design())
        vote = cls._vote(model, va, model.data.design())
        if vote is not None:
            out[MAJORITY_GROUP] = vote
        return out

    @staticmethod
    def _vote(model: MeasurementModel, va: xr.Dataset | None, design: pd.DataFrame
              ) -> xr.Dataset | None:
        vote = majority_vote(model, design)
        if vote is not None and va is not None:
            median = va["corr_va"].median("source").sel(draw=vote["draw"], task=vote["task"])
            vote["median_source_va"] = median
            vote["below_median_va"] = (vote["corr_va"] < median).astype(float)
        return vote

    def at_design(self, lessons: int, segments: int) -> None:
        """E3 and E4 for teachers scored over ``lessons`` lessons × ``segments`` segments
        (groups ``value_added_at_design``, ``ensembles_at_design``,
        ``majority_vote_at_design``; kept when saved)."""
        m = self.model
        design = stated_design(m.data.design(), lessons, segments)
        ag = agreement(m.posterior, design, m.source_llm, m.source_family)
        va = value_added(m.posterior, design)
        groups = {ENSEMBLES: self._ensembles(m, ag, va, design),
                  MAJORITY_GROUP: self._vote(m, va, design)}
        if va is not None:
            groups[VALUE_ADDED] = va
        groups = {k: v for k, v in groups.items() if v is not None}
        for key, ds in groups.items():
            ds.attrs.update(lessons=int(lessons), segments=int(segments))
            self.derived[DESIGN_GROUPS[key]] = ds
        for name in ("design_va_table", "design_ensemble_table"):
            self.__dict__.pop(name, None)

    @property
    def stated(self) -> tuple[int, int] | None:
        """(lessons, segments) of the stated design, when E3 and E4 were computed for one."""
        ds = self.derived.get(DESIGN_GROUPS[ENSEMBLES])
        return None if ds is None else (int(ds.attrs["lessons"]), int(ds.attrs["segments"]))

    @staticmethod
    def _ensembles(model: MeasurementModel, ag: xr.Dataset, va: xr.Dataset | None,
                   design: pd.DataFrame) -> xr.Dataset:
        """E4 per draw, with the median single source beside the ensembles and, with
        value-added, whether each ensemble is less aligned with it than that median."""
        c = model.coords
        weights = ensemble_weights([c["llm"][i] for i in model.source_llm],
                                   [c["prompt"][i] for i in model.source_prompt],
                                   model.data.benchmark)
        ens = ensembles(model.posterior, design, weights, model.source_llm,
                        model.source_family)
        ens["median_source_expert"] = ag["corr_expert"].median("source")
        ens["median_source_quality"] = ag["corr_quality"].median("source")
        if va is not None:
            median = va["corr_va"].median("source")
            ens["median_source_va"] = median
            ens["below_median_va"] = (ens["corr_va"] < median).astype(float)
        ens["weight"] = xr.DataArray(weights.to_numpy(float), dims=("ensemble", "source"),
                                     coords={"ensemble": ens["ensemble"],
                                             "source": model.posterior["source"]})
        return ens

    # -- what is reported -------------------------------------------------------------------
    @property
    def agreement(self) -> xr.Dataset:
        return self.derived["agreement"]

    @property
    def matrix(self) -> xr.Dataset:
        return self.derived["agreement_matrix"]

    @property
    def net(self) -> xr.Dataset:
        return self.derived["net_e1"]

    @property
    def impact(self) -> xr.Dataset | None:
        """E3 (value-added alignment per draw), or None without value-added."""
        return self.derived.get(VALUE_ADDED)

    @property
    def ensembles(self) -> xr.Dataset | None:
        """E4 per draw (absent from files written before it existed)."""
        return self.derived.get(ENSEMBLES)

    @property
    def comparison(self) -> xr.Dataset | None:
        return self.derived.get(COMPARISON)

    def gate_variables(self) -> xr.Dataset:
        """Every reported correlation (each distinct pair of sources at each level and task),
        each source's with an expert and with true quality, the ceilings, the means, and the
        net-E1 shares."""
        ag = self._agreement(self.model)
        out = {"pair": upper_pairs(ag["corr_sources"])} if ag.sizes["source"] > 1 else {}
        for name in ("corr_expert", "corr_quality", "noise_ceiling", "mean_expert"):
            out[name] = ag[name]
        if ag.sizes["source"] > 1:
            out["mean_inter"] = ag["mean_inter"]
        out["net_share"] = self.net["share"]
        if self.impact is not None:
            for name in ("corr_va", "corr_va_expert", "corr_va_quality",
                         "corr_va_misalignment"):
                out[name] = self.impact[name]
        if self.ensembles is not None:
            for name in ("corr_expert", "corr_quality", "corr_va", "corr_va_misalignment"):
                if name in self.ensembles:
                    out[f"ensemble_{name}"] = self.ensembles[name]
        return xr.Dataset(out)

    def sensitivity_quantities(self) -> xr.Dataset:
        ag = self.agreement.sel(level="cell")
        return xr.Dataset({
            "mean inter-LLM corr": ag["mean_inter"].mean("task"),
            "mean LLM–expert corr": ag["mean_expert"].mean("task"),
            **{f"net share:{c}": self.net["share_all_tasks"].sel(component=c, drop=True)
               for c in NET_COMPONENTS}})

    @property
    def notes(self) -> list[str]:
        notes = super().notes
        cfg = self.model.config
        notes.append(f"experts' severity and noise from: {cfg['experts_prior']}")
        r = (self.model.fit_config or {}).get("restarts")
        if r:
            gaps = ", ".join(f"{g:,.0f}" for g in r["log_density_below_best"])
            notes.append(f"chain(s) {r['restarted_chains']} settled in a minor mode (mean log "
                         f"density {gaps} below chain {r['from_chain']}) and were sampled again "
                         "from that chain's last draw (models/restart.py)")
        return notes

    @cached_property
    def level_table(self) -> pd.DataFrame:
        """Per task and level: mean inter-source and source–expert correlations, the noise
        ceiling, and P(inter > expert)."""
        ag = self.agreement
        t = interval_frame({"inter": ag["mean_inter"], "expert": ag["mean_expert"],
                            "ceiling": ag["noise_ceiling"]})
        p = (ag["inter_minus_expert"] > 0).mean(SAMPLE_DIMS)
        t["p_inter_above_expert"] = [float(p.sel(level=lv, task=tk))
                                     for lv, tk in zip(t["level"], t["task"], strict=True)]
        order = {lv: i for i, lv in enumerate(ag["level"].values)}
        return t.sort_values(["task", "level"], key=lambda s: s.map(order) if s.name == "level"
                             else s, kind="stable").reset_index(drop=True)

    @cached_property
    def source_table(self) -> pd.DataFrame:
        """Per task, level and source: correlation with a single expert rating and with true
        quality."""
        ag = self.agreement
        return interval_frame({"expert": ag["corr_expert"], "quality": ag["corr_quality"]})

    @cached_property
    def va_table(self) -> pd.DataFrame | None:
        """Per task and rater (true quality, the experts, each source, the sources' mean):
        the correlation of its teacher-level score with value-added and of its misalignment
        (minus the experts') with value-added, with P(< 0)."""
        return va_frame(self.impact)

    @cached_property
    def design_va_table(self) -> pd.DataFrame | None:
        """``va_table`` at the stated design (``at_design``), or None."""
        return va_frame(self.derived.get(DESIGN_GROUPS[VALUE_ADDED]))

    @cached_property
    def ensemble_table(self) -> pd.DataFrame | None:
        """Per task and ensemble (and the median single source): the correlation of a cell's
        rating with a single expert and with true quality, and with value-added its teacher
        score's and misalignment's, with P(less aligned with value-added than the median
        single source)."""
        return ensemble_frame(self.ensembles, "cell", self.derived.get(MAJORITY_GROUP))

    @cached_property
    def design_ensemble_table(self) -> pd.DataFrame | None:
        """``ensemble_table`` at the stated design, with a teacher score's correlations with a
        mean of single expert ratings and with true quality (the cell's do not depend on it)."""
        return ensemble_frame(self.derived.get(DESIGN_GROUPS[ENSEMBLES]), "teacher",
                               self.derived.get(DESIGN_GROUPS[MAJORITY_GROUP]))
    @cached_property
    def matrix_table(self) -> pd.DataFrame:
        """Every pair of sources (long form), per task and level."""
        m = self.matrix
        return m.to_dataframe().reset_index()

    @cached_property
    def net_table(self) -> pd.DataFrame:
        """Per task and over all tasks: each part of the error against true quality (and the
        reference part E1 counts as shared), as a variance and a share."""
        per_task = interval_frame({"variance": self.net["variance"],
                                   "share": self.net["share"]})
        overall = interval_frame({"variance": self.net["variance_all_tasks"],
                                  "share": self.net["share_all_tasks"]})
        overall.insert(0, "task", "all tasks")
        return pd.concat([overall, per_task], ignore_index=True)

    def headline_numbers(self) -> dict[str, tuple[float, float, float]]:
        """Over tasks at cell level: the mean inter-source and source–expert correlations and
        the noise ceiling, P(inter > expert); the net-E1 shares over all tasks."""
        ag = self.agreement.sel(level="cell")
        out = {}
        for key, da in (("inter", ag["mean_inter"].mean("task")),
                        ("expert", ag["mean_expert"].mean("task")),
                        ("ceiling", ag["noise_ceiling"].mean("task"))):
            h = hdi(da)
            out[key] = (float(da.mean()), float(h.sel(ci_bound="lower")),
                        float(h.sel(ci_bound="upper")))
        diff = (ag["mean_inter"] - ag["mean_expert"]).mean("task")
        out["p"] = (float((diff > 0).mean()),) * 3
        share = self.net["share_all_tasks"]
        parts = {str(c): share.sel(component=c, drop=True) for c in share["component"].values}
        parts["shared"] = parts["compression"] + parts["shared_deviation"]
        for c, da in parts.items():
            h = hdi(da)
            out[f"net:{c}"] = (float(da.mean()), float(h.sel(ci_bound="lower")),
                               float(h.sel(ci_bound="upper")))
        return out

    def compare_with(self, e1: AnalysisResults) -> None:
        """Keep the E1 aggregates of the same data beside the net split (report and summary).
        ``e1`` is an E1 results object (its ``table`` of components and aggregates)."""
        t = e1.table
        t = t[t["kind"] == "aggregate"].set_index("name")
        ds = xr.Dataset({k: ("aggregate", t[f"finite_{k}"].to_numpy(float))
                         for k in ("mean", "lower", "upper")},
                        coords={"aggregate": t.index.tolist()})
        ds.attrs["source"] = str(getattr(e1, "path", "") or "")
        self.derived[COMPARISON] = ds

    def quantities(self) -> pd.DataFrame:
        rows = []
        for key, (m, lo, hi) in self.headline_numbers().items():
            if key != "p":
                rows.append({"quantity": key, "mean": m, "lower": lo, "upper": hi,
                             "finite_mean": m})
        return pd.DataFrame(rows)

    def sections(self) -> list:
        return measurement_sections(self)

    @classmethod
    def from_datatree(cls, tree: xr.DataTree, source: str = "the file") -> Self:
        res = super().from_datatree(tree, source)
        for group in (COMPARISON, VALUE_ADDED, ENSEMBLES, MAJORITY_GROUP,
                      *DESIGN_GROUPS.values()):
            if group in tree.children:
                res.derived[group] = tree[group].to_dataset()
        return res



def experts_priors(gstudy: AnalysisResults, data: MeasurementData) -> tuple[dict, list[str]]:
    """Priors for the experts' severity and noise per task from a G-study of the same
    instrument (its ``variances``: rater and residual per dimension on the score scale),
    rescaled to each task's expert-SD scale: σ_rater ~ LogNormal fitted to the G-study's
    posterior of the rater SD; σ_expert ~ HalfNormal with the G-study's residual SD as its
    scale (that residual also holds segment-level quality, so it bounds the noise from above).
    Tasks the G-study lacks keep the default priors. Returns (priors, what was matched)."""
    var = gstudy.variances
    dims = [str(x) for x in var["dimension"].values]
    defaults = MeasurementModel.default_priors_for()
    mu, sd, scale_e = [], [], []
    matched = []
    for task in data.tasks:
        s2 = data.task_scale[task] ** 2
        if task in dims:
            rater = np.sqrt(var.sel(dimension=task, component="rater").values.ravel() / s2)
            log = np.log(np.maximum(rater, 1e-6))
            mu.append(float(log.mean()))
            sd.append(float(max(log.std(), 0.05)))
            resid = var.sel(dimension=task, component="residual").values.ravel() / s2
            scale_e.append(float(np.sqrt(resid.mean())))
            matched.append(task)
        else:
            mu.append(float(np.log(0.25)))
            sd.append(1.0)
            scale_e.append(float(defaults["sigma_expert"].parameters["sigma"]))
    priors = {"sigma_expert": Prior("HalfNormal", sigma=np.array(scale_e))}
    if len(data.raters) > 1:  # one rater: no severities to give a prior
        priors["sigma_rater"] = Prior("LogNormal", mu=np.array(mu), sigma=np.array(sd))
    return priors, matched


def fit_measurement(data: MeasurementData, priors: dict[str, Any] | None = None,
                    experts_prior: str = "", sampling: SamplerConfig | None = None,
                    **sampler: Any) -> MeasurementResults:
    return MeasurementResults.fit(data, priors=priors, experts_prior=experts_prior,
                                  sampling=sampling, **sampler)


__all__ = ["HDI_PROB", "MeasurementResults", "fit_measurement"]
