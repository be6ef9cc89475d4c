"""What flows between stages and out of the pipeline: segments, labels, verdicts, records.

`SegmentResult` is the pipeline's typed answer for one segment: either an accepted
`TrajectoryRecord` with every intermediate output, or the stage where it stopped and why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gem_synth.signatures.chat import (
    MESSAGES,
    TOOLS,
    AssistantMessage,
    Message,
    Tool,
    ToolMessage,
    UserMessage,
    content_text,
)
from gem_synth.signatures.workflow import Workflow

TaskCategory = Literal[
    "customer_support",
    "research_and_data",
    "education",
    "finance_and_banking",
    "healthcare",
    "travel_and_transport",
    "ecommerce_and_retail",
    "government_and_legal",
    "software_and_it",
    "hr_and_workplace",
    "home_and_personal",
    "other",
]

# GEM's generation patterns (a trajectory uses >= 3, each <= twice) and refinement patterns
# (GEM section 3.2). Each stage's output is typed with its own list; a record carries any.
GENERATION_PATTERNS = ("rule_conflict", "error_recovery", "clarification", "multi_hop_reasoning", "rule_awareness")
REFINEMENT_PATTERNS = (
    "error_recovery",
    "long_noisy_context",
    "clarification_inferable",
    "clarification_not_inferable",
    "no_tool_available",
    "user_guided_steps",
    "multi_constraint_turn",
    "pitfall",
)
ALL_PATTERNS = tuple(dict.fromkeys(GENERATION_PATTERNS + REFINEMENT_PATTERNS))
# Literal over a tuple unpacks it: one list of names per stage, no second copy to keep in step.
GenerationPattern = Literal[GENERATION_PATTERNS]
RefinementPattern = Literal[REFINEMENT_PATTERNS]
Pattern = Literal[ALL_PATTERNS]

Stage = Literal["filter", "extract", "generate", "refine", "synthesize", "validate", "judge", "run"]
Outcome = Literal["accepted", "filtered_out", "parse_error", "rule_violations", "judge_failed", "lm_error", "error"]


class Segment(BaseModel):
    id: str = Field(description="Stable id derived from source, position and content.")
    source: str = Field(description="Where the text came from: a path, a dataset name and row, ...")
    position: int = 0
    text: str


class FilterLabels(BaseModel):
    is_procedural: bool
    summary: str = ""
    domain: str = ""
    platform: str = ""
    task_category: TaskCategory = "other"


class RubricVerdict(BaseModel):
    passed: bool = Field(description="True when the trajectory has no problem of this kind.")
    offending_messages: list[int] = Field(
        default_factory=list, description="0-based indices of the messages that show the problem; empty if passed."
    )
    reason: str = Field(description="One or two sentences: what is wrong and where, or why it passes.")


class PatternEvidence(BaseModel):
    pattern: Pattern = Field(description="A claimed pattern that the conversation really exercises.")
    message_indices: list[int] = Field(description="0-based indices of the messages that show it.")
    evidence: str = Field(description="One sentence: what happens in those messages.")


class JudgeVerdicts(BaseModel):
    tool_call_hallucination: RubricVerdict  # R1
    capability_hallucination: RubricVerdict  # R2
    context_hallucination: RubricVerdict  # R3
    patterns_exercised: list[PatternEvidence] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.rubrics().values())

    def rubrics(self) -> dict[str, RubricVerdict]:
        """R1, R2, R3 by field name, in GEM's order."""
        return {"tool_call_hallucination": self.tool_call_hallucination,
                "capability_hallucination": self.capability_hallucination,
                "context_hallucination": self.context_hallucination}


Severity = Literal["error", "warning"]


class Violation(BaseModel):
    code: str = Field(description="Stable rule code, e.g. `C001`.")
    rule: str = Field(description="Short rule name, e.g. `unknown_tool`.")
    message_index: int | None = Field(description="0-based message index, or None for tool-set problems.")
    reason: str
    severity: Severity = "error"

    def line(self) -> str:
        where = "tools" if self.message_index is None else f"message {self.message_index}"
        return f"{self.code} {self.rule} at {where}: {self.reason}"


class TrajectoryStats(BaseModel):
    messages: int
    user_turns: int
    assistant_turns: int
    tool_calls: int
    distinct_tools_used: int
    tools_defined: int

    @classmethod
    def of(cls, tools: list[Tool], messages: list[Message]) -> "TrajectoryStats":
        calls = [c for m in messages if isinstance(m, AssistantMessage) for c in (m.tool_calls or [])]
        return cls(
            messages=len(messages),
            user_turns=sum(isinstance(m, UserMessage) for m in messages),
            assistant_turns=sum(isinstance(m, AssistantMessage) for m in messages),
            tool_calls=len(calls),
            distinct_tools_used=len({c.function.name for c in calls}),
            tools_defined=len(tools),
        )


class Trajectory(BaseModel):
    """An OpenAI-format conversation with its tool set: what trainers consume."""

    tools: list[Tool]
    messages: list[Message]

    @classmethod
    def from_openai(cls, record: dict[str, Any]) -> "Trajectory":
        return cls(tools=TOOLS.validate_python(record.get("tools") or []),
                   messages=MESSAGES.validate_python(record.get("messages")))

    def to_openai(self) -> dict[str, Any]:
        return {"tools": [t.to_openai() for t in self.tools], "messages": [m.to_openai() for m in self.messages]}

    def transcript(self) -> str:
        """Numbered rendering for a reader (the judge): `[i] role` then content and calls."""
        blocks = []
        for i, m in enumerate(self.messages):
            head = f"[{i}] {m.role}" + (f" (answers {m.tool_call_id})" if isinstance(m, ToolMessage) else "")
            lines = [head, content_text(m.content)] if content_text(m.content) else [head]
            if isinstance(m, AssistantMessage):
                lines += [f"-> call {c.id}: {c.function.name}({c.function.arguments})" for c in m.tool_calls or []]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


class TrajectoryRecord(BaseModel):
    """An accepted trajectory and its provenance."""

    id: str
    segment: Segment
    trajectory: Trajectory
    workflows: list[Workflow]
    labels: FilterLabels
    patterns_claimed: list[Pattern] = Field(default_factory=list, description="What the model said it exercised.")
    patterns_verified: list[Pattern] = Field(
        default_factory=list, description="The claimed patterns the transcript shows (programs/patterns.py).")
    pattern_evidence: dict[str, list[int]] = Field(
        default_factory=dict, description="Verified pattern -> the message indices that show it.")
    stats: TrajectoryStats
    judge: JudgeVerdicts | None = None
    warnings: list[Violation] = Field(default_factory=list)


class SegmentResult(BaseModel):
    """The pipeline's answer for one segment: accepted with its record, or where and why it stopped.

    Intermediate outputs are kept whichever way it ends, so a rejected segment can be
    inspected and a metric can score any stage.
    """

    segment: Segment
    outcome: Outcome
    stage: Stage = Field(description="The last stage that ran: where it stopped, or `judge`/`validate` if accepted.")
    reason: str = ""
    retryable: bool = Field(default=False, description="A transient LM failure: a rerun tries this segment again.")
    labels: FilterLabels | None = None
    workflows: list[Workflow] = Field(default_factory=list)
    draft: Trajectory | None = None
    draft_patterns: list[Pattern] = Field(default_factory=list)
    trajectory: Trajectory | None = None
    patterns: list[Pattern] = Field(default_factory=list, description="Claimed by the model for `trajectory`.")
    patterns_verified: list[Pattern] = Field(default_factory=list,
                                             description="Claims (of draft and final) the final transcript shows.")
    pattern_evidence: dict[str, list[int]] = Field(default_factory=dict)
    violations: list[Violation] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the program settled deterministically in the "
                                                               "model's output (a duplicate tool merged, ...).")
    judge: JudgeVerdicts | None = None
    record: TrajectoryRecord | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"
