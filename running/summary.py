"""The run summary: what happened to every segment, and how complex the output is.

Computed from the journal alone, so a resumed run reports the whole corpus, not just
its last part. Complexity is shown next to the paper's means (GEM, after refinement:
46.1 messages, 8.6 distinct tools, 16.3 tool calls).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gem_synth.running.tables import final_entries

PAPER = {"messages": 46.1, "distinct_tools_used": 8.6, "tool_calls": 16.3}
PAPER_BEFORE_REFINEMENT = {"messages": 30.05, "distinct_tools_used": 5.01, "tool_calls": 7.83}
RUBRICS = ("tool_call_hallucination", "capability_hallucination", "context_hallucination")


@dataclass
class Summary:
    segments: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    stopped_at: dict[str, int] = field(default_factory=dict)
    violation_codes: dict[str, int] = field(default_factory=dict)
    judge_pass_rates: dict[str, float] = field(default_factory=dict)
    judged: int = 0
    complexity: dict[str, dict[str, float]] = field(default_factory=dict)
    diversity: dict[str, float] = field(default_factory=dict)  # distinct domains, tool-set designs, ... (see below)
    patterns: dict[str, float] = field(default_factory=dict)  # claimed and verified per accepted trajectory
    pattern_verified_share: dict[str, float] = field(default_factory=dict)  # per pattern: verified / claimed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_calls: int = 0  # calls the model answered (what a provider bills), over every session of the run
    cached_calls: int = 0  # answered from DSPy's cache: free, no usage reported
    wall_seconds: float = 0.0  # every session of the run (sessions.jsonl), so cost per trajectory holds after a resume
    sessions: int = 0
    this_run_wall_seconds: float = 0.0
    this_run_segments: int = 0

    def per_accepted(self) -> dict[str, float]:
        """Cost of one accepted trajectory over the whole run: LM calls made, tokens, wall seconds."""
        if not self.accepted:
            return {}
        return {"lm_calls": self.lm_calls / self.accepted,
                "tokens": (self.prompt_tokens + self.completion_tokens) / self.accepted,
                "wall_seconds": self.wall_seconds / self.accepted}

    @property
    def accepted(self) -> int:
        return self.outcomes.get("accepted", 0)

    @property
    def yield_rate(self) -> float:
        unique = self.segments - self.outcomes.get("duplicate", 0) - self.outcomes.get("unreadable", 0)
        return self.accepted / unique if unique else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accepted": self.accepted, "yield": round(self.yield_rate, 4),
                "per_accepted": self.per_accepted(), "paper_reference": PAPER}

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow."""
        out: dict[str, float] = {"segments": self.segments, "accepted": self.accepted, "yield": self.yield_rate,
                                 "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                 "lm_calls": self.lm_calls, "cached_calls": self.cached_calls,
                                 "wall_seconds": self.wall_seconds}
        out |= {f"per_accepted.{k}": v for k, v in self.per_accepted().items()}
        out |= {f"outcome.{k}": v for k, v in self.outcomes.items()}
        out |= {f"violations.{k}": v for k, v in self.violation_codes.items()}
        out |= {f"judge.{k}.pass_rate": v for k, v in self.judge_pass_rates.items()}
        out |= {f"patterns.{k}": v for k, v in self.patterns.items()}
        out |= {f"diversity.{k}": v for k, v in self.diversity.items()}
        for name, stats in self.complexity.items():
            out |= {f"complexity.{name}.{k}": v for k, v in stats.items()}
        return out

    def table(self) -> str:
        lines = [f"segments            {self.segments}  (this run: {self.this_run_segments})"]
        for outcome, n in sorted(self.outcomes.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {outcome:<18}{n}")
        lines.append(f"yield               {self.yield_rate:.1%} of unique readable segments")
        if self.stopped_at:
            lines.append("stopped at          " + ", ".join(f"{k} {v}" for k, v in sorted(self.stopped_at.items())))
        if self.violation_codes:
            lines.append("rule violations     " + ", ".join(f"{k} {v}" for k, v in sorted(self.violation_codes.items())))
        if self.judged:
            rates = ", ".join(f"R{i} {v:.0%}" for i, v in enumerate(self.judge_pass_rates.values(), start=1))
            lines.append(f"judge pass rates    {rates}  (of {self.judged} judged)")
        if self.complexity:
            lines.append("complexity          mean / median   (paper after refinement)")
            for name, stats in self.complexity.items():
                ref = PAPER.get(name)
                lines.append(f"  {name:<20}{stats['mean']:.1f} / {stats['median']:.1f}"
                             + (f"   ({ref})" if ref else ""))
        if self.diversity:
            d = self.diversity
            labels = (f"{d['domains']:.0f} domains, {d['task_categories']:.0f} task categories, "
                      f"{d['platforms']:.0f} platforms, " if "domains" in d else "no filter labels (no filter ran), ")
            lines.append(f"diversity           {labels}{d['tool_names']:.0f} tool names")
            lines.append(f"                    {d['tool_set_designs']:.0f} tool-set designs (largest "
                         f"{d['largest_tool_set_share']:.0%}), {d['first_request_clusters']:.0f} distinct first "
                         f"requests (largest {d['largest_first_request_share']:.0%})")
        if self.patterns:
            lines.append(f"patterns            {self.patterns['verified_mean']:.1f} verified of "
                         f"{self.patterns['claimed_mean']:.1f} claimed per trajectory")
        lines.append(f"LM calls            {self.lm_calls} made: {self.prompt_tokens} tokens in / "
                     f"{self.completion_tokens} out" + (f"; {self.cached_calls} answered from the cache (free)"
                                                        if self.cached_calls else ""))
        sessions = f" over {self.sessions} sessions (this one {self.this_run_wall_seconds:.1f} s)" \
            if self.sessions > 1 else ""
        lines.append(f"wall time           {self.wall_seconds:.1f} s{sessions}")
        if self.accepted:
            cost = self.per_accepted()
            lines.append(f"per trajectory      {cost['lm_calls']:.1f} LM calls, {cost['tokens']:.0f} tokens, "
                         f"{cost['wall_seconds']:.1f} s")
        return "\n".join(lines)


def summarize(journal: Path, this_run_wall_seconds: float = 0.0, this_run_segments: int = 0) -> Summary:
    """The summary of the run whose journal is `journal`; wall time from `sessions.jsonl` beside it."""
    s = Summary(this_run_wall_seconds=this_run_wall_seconds, this_run_segments=this_run_segments)
    sessions_path = journal.parent / "sessions.jsonl"
    if sessions_path.exists():
        for line in sessions_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                s.sessions += 1
                s.wall_seconds += json.loads(line).get("wall_seconds", 0.0)
    else:
        s.wall_seconds, s.sessions = this_run_wall_seconds, 1
    outcomes: Counter[str] = Counter()
    stopped: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    passes: Counter[str] = Counter()
    complexity: dict[str, list[int]] = {k: [] for k in ("messages", "distinct_tools_used", "tool_calls", "user_turns")}
    accepted_records: list[dict] = []
    for entry in final_entries(journal):
        s.segments += 1
        outcomes[entry["outcome"]] += 1
        usage = entry.get("usage") or {}
        s.prompt_tokens += usage.get("prompt_tokens", 0)
        s.completion_tokens += usage.get("completion_tokens", 0)
        s.lm_calls += usage.get("lm_calls", 0)
        s.cached_calls += usage.get("cached_calls", 0)
        result = entry.get("result")
        if not result:
            continue
        if entry["outcome"] != "accepted":
            stopped[entry.get("stage", "")] += 1
        codes.update(v["code"] for v in result.get("violations", []))
        judge = result.get("judge")
        if judge:
            s.judged += 1
            passes.update(r for r in RUBRICS if judge[r]["passed"])
        record = result.get("record")
        if record:
            for key, values in complexity.items():
                values.append(record["stats"][key])
            accepted_records.append(record)
    s.outcomes, s.stopped_at, s.violation_codes = dict(outcomes), dict(stopped), dict(codes)
    if s.judged:
        s.judge_pass_rates = {r: passes[r] / s.judged for r in RUBRICS}
    s.complexity = {k: {"mean": statistics.fmean(v), "median": float(statistics.median(v))}
                    for k, v in complexity.items() if v}
    if accepted_records:
        s.diversity = diversity(accepted_records)
        claimed = [r.get("patterns_claimed") or [] for r in accepted_records]
        verified = [r.get("patterns_verified") or [] for r in accepted_records]
        s.patterns = {"claimed_mean": statistics.fmean(map(len, claimed)),
                      "verified_mean": statistics.fmean(map(len, verified)),
                      "verified_at_least_3": sum(len(v) >= 3 for v in verified) / len(verified)}
        claimed_counts, verified_counts = Counter(p for c in claimed for p in c), Counter(p for v in verified for p in v)
        s.pattern_verified_share = {p: verified_counts[p] / n for p, n in sorted(claimed_counts.items())}
    return s


def diversity(records: list[dict]) -> dict[str, float]:
    """How varied accepted trajectories are: distinct labels and tool names, and near-duplicate clusters
    (MinHash LSH, running/dedup.py) of tool-set designs (tool and parameter names) and of first user
    requests, with the share of the largest cluster (1.0: everything is one design)."""
    from gem_synth.running.dedup import clusters, shingles

    def tool_tokens(record: dict) -> set[bytes]:
        tools = record["trajectory"]["tools"]
        names = {t["function"]["name"] for t in tools}
        params = {p for t in tools for p in (t["function"].get("parameters") or {}).get("properties", {})}
        return {n.encode() for n in names | params}

    def first_request(record: dict) -> set[bytes]:
        user = next((m for m in record["trajectory"]["messages"] if m.get("role") == "user"), {})
        content = user.get("content")
        return shingles(content if isinstance(content, str) else "")

    n = len(records)
    tool_sets = clusters(((r["id"], tool_tokens(r)) for r in records), threshold=0.5)
    requests = clusters(((r["id"], first_request(r)) for r in records), threshold=0.5)
    labels = [r.get("labels") or {} for r in records]
    out: dict[str, float] = {}
    if any(lab.get("domain") for lab in labels):  # the synthesizer and filter-less runs label nothing
        out |= {"domains": len({lab.get("domain") for lab in labels if lab.get("domain")}),
                "task_categories": len({lab.get("task_category") for lab in labels if lab.get("task_category")}),
                "platforms": len({lab.get("platform") for lab in labels if lab.get("platform")})}
    return out | {
        "tool_names": len({t["function"]["name"] for r in records for t in r["trajectory"]["tools"]}),
        "tool_set_designs": len(tool_sets), "largest_tool_set_share": len(tool_sets[0]) / n,
        "first_request_clusters": len(requests), "largest_first_request_share": len(requests[0]) / n,
    }
