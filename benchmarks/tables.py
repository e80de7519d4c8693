"""Summaries, Markdown tables, target checks and plots for `benchmarks.judges`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer.stats.fixed import clopper_pearson

if TYPE_CHECKING:
    from analyzer.app.simulation import RunResult
    from benchmarks.generate import Batch

PEERS = ("flagger", "flagger_relative", "kayenta", "peeking", "fixed_horizon")
OPEN_METHODS = ("ours", "today", *PEERS, "oracle")
LABELS = {"ours": "ours", "today": "ours before #9", "flagger": "Flagger", "flagger_relative": "Flagger rel.",
          "kayenta": "Kayenta", "peeking": "peeking", "fixed_horizon": "fixed-60", "oracle": "oracle SPRT"}
# Cell fields that make an A/A cell the fair false-rollback reference of a regression cell.
MATCH_KEYS = ("rps", "p_b", "weights", "shock_sigma", "overdispersion", "warmup_factor", "warmup_minutes",
              "gap_share", "gap_block", "counter_reset", "pods_c", "pods_b", "pod_error_sigma", "pod_latency_sigma")
PROMOTION_ALPHA = 0.05  # config/examples/reviews.yaml


def _q(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {"p50": round(float(np.quantile(values, 0.5)), 2), "p90": round(float(np.quantile(values, 0.9)), 2)}


def _rate(k: int, n: int) -> dict[str, Any]:
    ci = clopper_pearson(k, n) if n else None
    return {"k": k, "n": n, "rate": k / n if n else None,
            "ci95": [round(ci.low, 5), round(ci.high, 5)] if ci else None}


def summarise_open(decisions: Sequence[str], minutes: np.ndarray, batch: Batch, alpha: float) -> dict[str, Any]:
    """One method on one open-loop cell: rollback rate (+CP), promotions, delays among detected runs."""
    cell = batch.cell
    dec = np.asarray(decisions)
    n = dec.size
    rb = dec == "rollback"
    out: dict[str, Any] = {
        "rollback": _rate(int(rb.sum()), n),
        "promote_rate": float((dec == "promote").mean()),
        "inconclusive_rate": float((dec == "inconclusive").mean()),
        "undecided_rate": float((dec == "continue").mean()),
        "promote_minute": _q(minutes[dec == "promote"].astype(float)),
    }
    if cell.null:
        return out
    idx = np.flatnonzero(rb)
    m = minutes[rb].astype(int)
    col = np.minimum(m, cell.horizon) - 1  # Flagger's rollback lag can put the decision at minute T + 1
    onset = cell.onset
    req = np.cumsum(batch.served_c[:n], axis=1)
    harm = np.cumsum(batch.harm[:n], axis=1)
    base_req = req[idx, onset - 1] if onset > 0 else 0
    base_harm = harm[idx, onset - 1] if onset > 0 else 0.0
    after = m > onset
    out["detection"] = out["rollback"]["rate"]
    out["early_rollbacks"] = int((~after).sum())  # before the onset: false rollbacks in a regression cell
    out["delay_minutes"] = _q((m - onset)[after].astype(float))
    out["delay_requests"] = _q((req[idx, col] - base_req)[after].astype(float))
    out["delay_excess_bad"] = _q((harm[idx, col] - base_harm)[after])
    return out


def summarise_closed(runs: Sequence[RunResult], alpha: float, *, tolerance: float, null: bool,
                     regressed: bool) -> dict[str, Any]:
    outcomes = Counter(r.outcome for r in runs)
    n = len(runs)

    def minutes(outcome: str) -> np.ndarray:
        return np.asarray([r.decision_minute for r in runs if r.outcome == outcome and r.decision_minute is not None],
                          dtype=float)

    rolled = [r for r in runs if r.outcome == "rolled_back"]
    return {
        "n": n,
        "outcomes": dict(outcomes),
        "rollback": _rate(outcomes["rolled_back"], n),
        "promote": _rate(outcomes["promoted"], n),
        "inconclusive_rate": (outcomes["inconclusive"] + outcomes["paused"]) / n if n else None,
        "promote_minute": _q(minutes("promoted")),
        "rollback_minute": _q(minutes("rolled_back")),
        "rollback_canary_requests": _q(np.asarray([r.canary_requests for r in rolled], dtype=float)),
        "rollback_excess_bad": _q(np.asarray([r.excess_bad_requests for r in rolled], dtype=float)),
        "false_promotion": regressed,
        "tolerance": tolerance,
        "null": null,
    }


# ---- target checks ----


def _open(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["loop"] == "open"]


def matching_null(result: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    cell = result["cell"]
    for r in _open(doc):
        c = r["cell"]
        if c["null"] and not c["within_bucket"] and all(c[k] == cell[k] for k in MATCH_KEYS):
            return r
    return None


def _p50(summary: dict[str, Any], key: str = "delay_minutes") -> float | None:
    q = summary.get(key)
    return None if q is None else q["p50"]


def targets(doc: dict[str, Any]) -> dict[str, Any]:
    alpha = doc["alpha"]
    aa = [r for r in _open(doc) if r["cell"]["null"]]
    over = [(r["cell"]["name"], r["methods"]["ours"]["rollback"]) for r in aa
            if r["methods"]["ours"]["rollback"]["rate"] > alpha]
    gaps = {r["cell"]["name"]: r["methods"]["ours"].get("rollbacks_caused_by_gaps") for r in _open(doc)
            if "rollbacks_caused_by_gaps" in r["methods"]["ours"]}
    oracle_rows, kayenta_rows = [], []
    for r in _open(doc):
        c, ms = r["cell"], r["methods"]
        if c["null"] or "oracle" not in ms:
            continue
        ours, orc, kay = ms["ours"], ms["oracle"], ms["kayenta"]
        in_scope = (c["kind"] == "errors" and c["theta"] in (2.0, 5.0)) or (c["kind"] == "latency"
                                                                           and c["lat_scale"] == 1.2)
        if in_scope and c["group"] != "robustness":
            o, d = _p50(orc), _p50(ours)
            reliable = (ours["detection"] >= 0.5) and (orc["detection"] >= 0.5)
            ratio = d / o if (reliable and d is not None and o) else None
            oracle_rows.append({"cell": c["name"], "ours_p50": d, "oracle_p50": o, "ratio": ratio,
                                "ours_detection": ours["detection"], "oracle_detection": orc["detection"],
                                "met": None if ratio is None else ratio <= 1.5})
        ref = matching_null(r, doc)
        if ref is not None and ours["detection"] >= 0.5 and kay["detection"] >= 0.5:
            frr_ours = ref["methods"]["ours"]["rollback"]["rate"]
            frr_kay = ref["methods"]["kayenta"]["rollback"]["rate"]
            d, k = _p50(ours), _p50(kay)
            speedup = k / max(d, 0.5) if d is not None and k is not None else None
            kayenta_rows.append({"cell": c["name"], "ours_p50": d, "kayenta_p50": k, "speedup": speedup,
                                 "frr_ours": frr_ours, "frr_kayenta": frr_kay,
                                 "met": speedup is not None and speedup >= 3 and frr_ours <= frr_kay})
    today_rows = []
    for r in _open(doc):
        c, ms = r["cell"], r["methods"]
        binomial = not (c.get("overdispersion") or c.get("pod_error_sigma") or c.get("pod_latency_sigma")
                        or c.get("shock_sigma"))
        if c["null"] or c["kind"] != "errors" or c["theta"] not in (2.0, 5.0) or not binomial or "today" not in ms:
            continue
        d, t0 = _p50(ms["ours"]), _p50(ms["today"])
        reliable = ms["ours"]["detection"] >= 0.5 and ms["today"]["detection"] >= 0.5
        ratio = d / t0 if (reliable and d is not None and t0) else None
        today_rows.append({"cell": c["name"], "ours_p50": d, "today_p50": t0, "ratio": ratio,
                           "met": None if ratio is None else ratio <= 1.5})
    false_prom = []
    for r in doc["results"]:
        if r["loop"] != "closed":
            continue
        c, o = r["cell"], r["ours"]
        if c["theta"] >= o["tolerance"]:
            false_prom.append({"cell": c["name"], "rate": o["promote"]["rate"], "ci95": o["promote"]["ci95"],
                               "n": o["n"], "met": o["promote"]["rate"] <= PROMOTION_ALPHA})
    return {
        "today_ratio": today_rows,
        "false_promotions": false_prom,
        "aa_cells": len(aa),
        "aa_over_alpha": [{"cell": n, **v} for n, v in over],
        "aa_significantly_over_alpha": [n for n, v in over if v["ci95"][0] > alpha],
        "gap_caused_rollbacks_ours": gaps,
        "oracle_ratio": oracle_rows,
        "kayenta_speedup": kayenta_rows,
    }


# ---- Markdown ----


def _pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.2g}" if x else "0"


def _q_str(q: dict[str, float] | None) -> str:
    return "—" if q is None else f"{_num(q['p50'])} / {_num(q['p90'])}"


def _aa_table(doc: dict[str, Any]) -> list[str]:
    cols = ("ours", "today", *PEERS)
    lines = ["| cell | " + " | ".join(LABELS[m] for m in cols) + " | n (Kayenta n) |",
             "|---" * (len(cols) + 2) + "|"]
    for r in _open(doc):
        if not r["cell"]["null"]:
            continue
        cells = []
        for m in cols:
            rb = r["methods"][m]["rollback"]
            cells.append(f"{_pct(rb['rate'])} [{_pct(rb['ci95'][0])}, {_pct(rb['ci95'][1])}]")
        n, nk = r["methods"]["ours"]["rollback"]["n"], r["methods"]["kayenta"]["rollback"]["n"]
        lines.append(f"| {r['cell']['name']} | " + " | ".join(cells) + f" | {n} ({nk}) |")
    return lines


def _detection_table(doc: dict[str, Any]) -> list[str]:
    cols = OPEN_METHODS
    lines = ["| cell | " + " | ".join(LABELS[m] for m in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in _open(doc):
        if r["cell"]["null"]:
            continue
        cells = []
        for m in cols:
            s = r["methods"].get(m)
            if s is None:
                cells.append("—")
                continue
            cells.append(f"{_pct(s['detection'], 0)}% / {_num(_p50(s))}")
        lines.append(f"| {r['cell']['name']} | " + " | ".join(cells) + " |")
    return lines


def _delay_table(doc: dict[str, Any]) -> list[str]:
    lines = ["| cell | ours det. | ours min p50/p90 | ours canary req. p50/p90 | ours excess bad p50/p90 | "
             "oracle min p50/p90 | ours÷oracle | Kayenta min p50/p90 | Kayenta÷ours | Kayenta excess bad p50 |",
             "|---" * 10 + "|"]
    for r in _open(doc):
        ms = r["methods"]
        if r["cell"]["null"]:
            continue
        ours, orc, kay = ms["ours"], ms.get("oracle"), ms["kayenta"]
        d, o, k = _p50(ours), _p50(orc) if orc else None, _p50(kay)
        ratio = f"{d / o:.2f}" if d is not None and o else "—"
        speed = f"{k / max(d, 0.5):.1f}" if d is not None and k is not None else "—"
        lines.append(
            f"| {r['cell']['name']} | {_pct(ours['detection'], 0)}% | {_q_str(ours['delay_minutes'])} | "
            f"{_q_str(ours['delay_requests'])} | {_q_str(ours['delay_excess_bad'])} | "
            f"{_q_str(orc['delay_minutes']) if orc else '—'} | {ratio} | {_q_str(kay['delay_minutes'])} | {speed} | "
            f"{_num(_p50(kay, 'delay_excess_bad'))} |")
    return lines


def _promotion_table(doc: dict[str, Any]) -> list[str]:
    """Open-loop promotion and inconclusive rates of the peers (their promotion is at the end of their schedule)."""
    cols = PEERS
    lines = ["| cell | " + " | ".join(f"{LABELS[m]} promote / inconcl." for m in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for r in _open(doc):
        cells = [f"{_pct(r['methods'][m]['promote_rate'], 1)} / {_pct(r['methods'][m]['inconclusive_rate'], 1)}"
                 for m in cols]
        lines.append(f"| {r['cell']['name']} | " + " | ".join(cells) + " |")
    return lines


def _closed_table(doc: dict[str, Any]) -> list[str]:
    lines = ["| cell | n | promoted % [CP95] | rolled back % [CP95] | inconclusive/paused % | "
             "promote min p50/p90 | rollback min p50/p90 | rollback excess bad p50/p90 |", "|---" * 8 + "|"]
    for r in doc["results"]:
        if r["loop"] != "closed":
            continue
        s = r["ours"]
        p, b = s["promote"], s["rollback"]
        lines.append(
            f"| {r['cell']['name']} | {s['n']} | "
            f"{_pct(p['rate'], 1)} [{_pct(p['ci95'][0], 1)}, {_pct(p['ci95'][1], 1)}]"
            f" | {_pct(b['rate'], 1)} [{_pct(b['ci95'][0], 1)}, {_pct(b['ci95'][1], 1)}] | "
            f"{_pct(s['inconclusive_rate'], 1)} | {_q_str(s['promote_minute'])} | {_q_str(s['rollback_minute'])} | "
            f"{_q_str(s['rollback_excess_bad'])} |")
    return lines


def _targets_md(t: dict[str, Any], alpha: float) -> list[str]:
    lines = [f"* A/A false rollbacks of ours ≤ α = {alpha:g} in all {t['aa_cells']} A/A cells: "
             + ("**met**" if not t["aa_over_alpha"] else
                f"point estimate above α in {len(t['aa_over_alpha'])} cell(s) "
                f"({', '.join(x['cell'] for x in t['aa_over_alpha'])}); significantly above (CP lower > α) in "
                f"{len(t['aa_significantly_over_alpha'])}: {', '.join(t['aa_significantly_over_alpha']) or 'none'}")]
    gaps = t["gap_caused_rollbacks_ours"]
    lines.append("* Rollbacks of ours caused by telemetry gaps (rolled back with gaps, not without, same replicates): "
                 + ", ".join(f"{k}: {v}" for k, v in gaps.items()))
    met = [r for r in t["oracle_ratio"] if r["met"]]
    miss = [r for r in t["oracle_ratio"] if r["met"] is False]
    na = [r for r in t["oracle_ratio"] if r["met"] is None]
    lines.append(f"* Median delay ≤ 1.5× oracle (errors ×2, ×5; latency ×1.2; cells where both detect ≥ 50%): "
                 f"met in {len(met)}, missed in {len(miss)}, not assessable in {len(na)}")
    for r in miss:
        lines.append(f"  * missed: {r['cell']}: ours {r['ours_p50']} min vs oracle {r['oracle_p50']} min "
                     f"(×{r['ratio']:.2f})")
    rows = t.get("today_ratio", [])
    met_t = [r for r in rows if r["met"]]
    miss_t = [r for r in rows if r["met"] is False]
    lines.append(f"* Median delay ≤ 1.5× the test before issue 9 (errors ×2, ×5, binomial cells where both detect "
                 f"≥ 50%): met in {len(met_t)}, missed in {len(miss_t)}, not assessable in "
                 f"{len(rows) - len(met_t) - len(miss_t)}")
    for r in miss_t:
        lines.append(f"  * missed: {r['cell']}: ours {r['ours_p50']} min vs before {r['today_p50']} min "
                     f"(×{r['ratio']:.2f})")
    fp = t.get("false_promotions", [])
    over = [r for r in fp if not r["met"]]
    lines.append(f"* False promotions at ratio ≥ tolerance ≤ promotionAlpha {PROMOTION_ALPHA:g} (closed loop): "
                 + ("**met** in all " + str(len(fp)) + " cells" if not over else
                    "above in " + ", ".join(f"{r['cell']} {_pct(r['rate'])}%" for r in over))
                 + " (" + ", ".join(f"{r['cell']}: {_pct(r['rate'], 1)}% [{_pct(r['ci95'][0], 1)}, "
                                    f"{_pct(r['ci95'][1], 1)}], n={r['n']}" for r in fp) + ")")
    ks = t["kayenta_speedup"]
    ok = [r for r in ks if r["met"]]
    lines.append(f"* ≥3× faster median detection than Kayenta at ≤ its A/A false-rollback rate (cells where both "
                 f"detect ≥ 50%): met in {len(ok)} of {len(ks)}")
    for r in ks:
        if not r["met"]:
            sp = "—" if r["speedup"] is None else f"{r['speedup']:.1f}"
            lines.append(f"  * not met: {r['cell']}: ours {r['ours_p50']} min, Kayenta {r['kayenta_p50']} min "
                         f"(×{sp}); A/A FRR ours {_pct(r['frr_ours'])}%, Kayenta {_pct(r['frr_kayenta'])}%")
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    t = targets(doc)
    out = [f"# Canary judge benchmark ({doc['mode']} run)", "",
           f"α = {doc['alpha']:g} overall ({doc['alpha_per_metric']:g} per metric), horizon 60 one-minute looks, "
           f"{doc['workers']} worker(s), wall time {doc['wall_seconds']} s.", "",
           "## Targets", "", *_targets_md(t, doc["alpha"]), "",
           "## A/A false-rollback rate, % [Clopper–Pearson 95%]", "", *_aa_table(doc), "",
           "## Detection within 60 min, % / median delay (min after onset)", "", *_detection_table(doc), "",
           "## Delays of ours vs the oracle and Kayenta (among detected runs)", "", *_delay_table(doc), "",
           "## Peers: promotion and inconclusive rates (open loop, %)", "",
           "A promotion in a regression cell is a false promotion.", "", *_promotion_table(doc), "",
           "## Ours, closed loop (reviews spec: header phase, 10/25/50 %, dwell 3, 60 min budget)", "",
           "A promotion in a regression cell with effect ≥ tolerance 1.5 (errors) or latency ×1.2+ is a false "
           "promotion.", "", *_closed_table(doc), ""]
    return "\n".join(out)


# ---- plots ----


def _plot_delays(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("errors", "rps=100 pB=0.1%", "theta", "error ratio θ"),
              ("errors", "rps=1000 pB=0.1%", "theta", "error ratio θ"),
              ("latency", "rps=100", "lat_scale", "latency scale"),
              ("latency", "rps=10", "lat_scale", "latency scale")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (kind, suffix, key, xlabel) in zip(axes[0], panels, strict=True):
        rows = [r for r in _open(doc) if r["cell"]["kind"] == kind and r["cell"]["group"] != "robustness"
                and r["cell"]["name"].endswith(suffix)]
        rows.sort(key=lambda r: r["cell"][key])
        for m in OPEN_METHODS:
            xs, ys = [], []
            for r in rows:
                s = r["methods"].get(m)
                if s and s["detection"] >= 0.5 and _p50(s) is not None:
                    xs.append(r["cell"][key])
                    ys.append(_p50(s))
            if xs:
                ax.plot(xs, ys, marker="o", label=LABELS[m], linestyle="--" if m == "oracle" else "-")
        ax.set_title(f"{kind} {suffix}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median detection delay (min), detection ≥ 50%")
        ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_aa(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _open(doc) if r["cell"]["null"]]
    cols = ("ours", *PEERS)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows) * 2), 5))
    width = 0.8 / len(cols)
    for j, m in enumerate(cols):
        rates = np.asarray([r["methods"][m]["rollback"]["rate"] for r in rows])
        lo = np.asarray([r["methods"][m]["rollback"]["ci95"][0] for r in rows])
        hi = np.asarray([r["methods"][m]["rollback"]["ci95"][1] for r in rows])
        x = np.arange(len(rows)) + (j - len(cols) / 2) * width
        ax.errorbar(x, rates, yerr=[rates - lo, hi - rates], fmt="o", ms=3, label=LABELS[m], capsize=2)
    ax.axhline(doc["alpha"], color="k", linestyle=":", label=f"α = {doc['alpha']:g}")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels([r["cell"]["name"].removeprefix("A/A ") for r in rows], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("A/A false-rollback rate (CP 95%)")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(doc: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {**doc, "targets": targets(doc)}
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=_json_default))
    (out / "results.md").write_text(render_markdown(doc))
    _plot_delays(doc, out / "delay_vs_effect.png")
    _plot_aa(doc, out / "aa_false_rollbacks.png")


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
