"""Distilling the GEM pipeline into the one-call Trajectory Synthesizer, at two levels.

1. Prompt level: the pipeline's accepted trajectories (and its rejections of
   non-procedural texts) become (text -> tools + trajectory) demonstrations; the
   synthesizer is compiled on them with the same optimizers and metrics as the pipeline.
2. Weight level: the same pairs as a supervised fine-tuning dataset in chat format:

       system     the synthesizer's instruction (TrajectorySynthesis)
       user       the text
       assistant  JSON: {"is_procedural": bool, "tools": [OpenAI tools],
                         "messages": [OpenAI messages], "patterns": [...]}

   a `messages` column that TRL's SFTTrainer takes as it is (`running.exports`
   holds the serialisation and `parse_sft_answer`, its inverse). DSPy's BootstrapFinetune
   cannot build these pairs (teacher and student must share predictor names), hence
   they are built explicitly here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dspy

from gem_synth.optimizers.compile import Budget, compile_program
from gem_synth.running.tables import final_entries
from gem_synth.running.exports import sft_messages
from gem_synth.programs.synthesizer import Synthesizer
from gem_synth.signatures import TrajectorySynthesis
from gem_synth.signatures.conversation import Conversation
from gem_synth.signatures.drafts import ToolSpec
from gem_synth.signatures.records import SegmentResult


def pairs_from_results(results: Iterable[SegmentResult], negatives: bool = True) -> list[dspy.Example]:
    """Teacher outputs as synthesizer examples: accepted trajectories, and (with `negatives`)
    texts the teacher's filter rejected, with empty outputs."""
    pairs = []
    for r in results:
        if r.accepted and r.trajectory is not None:
            pairs.append(dspy.Example(
                text=r.segment.text, segment_id=r.segment.id, is_procedural=True,
                tools=[ToolSpec.from_tool(t) for t in r.trajectory.tools],
                trajectory=Conversation.from_messages(r.trajectory.messages),
                patterns_used=list(r.patterns_verified)).with_inputs("text", "segment_id"))  # taught to claim only
                # what the conversation shows
        elif negatives and r.outcome == "filtered_out":
            pairs.append(dspy.Example(text=r.segment.text, segment_id=r.segment.id, is_procedural=False, tools=[],
                                      trajectory=None, patterns_used=[]).with_inputs("text", "segment_id"))
    return pairs


def pairs_from_run(run_dir: str | Path, negatives: bool = True) -> list[dspy.Example]:
    """Pairs from a finished `gem-synth run` output folder (its journal)."""
    journal = Path(run_dir) / "journal.jsonl"
    if not journal.is_file():
        raise FileNotFoundError(f"{run_dir}: no journal.jsonl; is it a gem-synth run folder?")
    results = (SegmentResult.model_validate(e["result"]) for e in final_entries(journal) if e.get("result"))
    return pairs_from_results(results, negatives)


def distil_prompt(pairs: list[dspy.Example], devset: list[dspy.Example] | None = None,
                  optimizer: str = "bootstrap", budget: Budget = Budget(max_labeled_demos=2),
                  student: Synthesizer | None = None, reflection_lm: dspy.LM | None = None) -> Synthesizer:
    """Compile the synthesizer on the teacher's pairs: labelled demos, then the optimizer's search."""
    if not pairs:
        raise ValueError("no teacher pairs: the teacher run accepted no trajectory")
    return compile_program(student or Synthesizer(), optimizer, pairs, devset, budget, reflection_lm=reflection_lm)


def sft_rows(pairs: list[dspy.Example]) -> list[dict[str, Any]]:
    """The pairs as the synthesizer's chats (see running.exports.sft_messages)."""
    rows = []
    for p in pairs:
        answer = {"is_procedural": p.is_procedural, "tools": [spec.to_tool().to_openai() for spec in p.tools],
                  "messages": [m.to_openai() for m in p.trajectory.to_messages()] if p.trajectory else [],
                  "patterns": list(p.patterns_used)}
        rows.append({"id": p.segment_id, "messages": sft_messages(p.text, answer, TrajectorySynthesis.instructions)})
    return rows


class FinetuneUnavailable(Exception):
    """Fine-tuning cannot run here; the message is one line saying what is missing."""


def finetune_trl(data_dir: str | Path, base_model: str, out: str | Path, epochs: float = 1.0,
                 max_steps: int = -1, allow_cpu: bool = False, batch_size: int = 1):
    """Supervised fine-tuning of `base_model` on the SFT dataset with TRL (needs a GPU for real models)."""
    try:
        import torch
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise FinetuneUnavailable(f"the TRL backend needs `pip install trl torch` ({exc.name} is missing)") from exc
    if not torch.cuda.is_available() and not allow_cpu:
        raise FinetuneUnavailable("no GPU found: fine-tuning a real model with TRL needs one (--allow-cpu forces it)")
    import datasets

    train = datasets.load_from_disk(str(data_dir))
    config = SFTConfig(output_dir=str(out), num_train_epochs=epochs, max_steps=max_steps,
                       per_device_train_batch_size=batch_size, report_to=[], use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=base_model, train_dataset=train.select_columns(["messages"]), args=config)
    trainer.train()
    trainer.save_model(str(out))
    return trainer


def finetune_provider(data_dir: str | Path, model: str) -> str:
    """Hand the SFT data to the fine-tuning API of the model's provider through DSPy; returns the new model."""
    import datasets
    from dspy.clients.utils_finetune import TrainDataFormat

    train = [{"messages": m} for m in datasets.load_from_disk(str(data_dir))["messages"]]
    lm = dspy.LM(model)
    try:
        job = lm.finetune(train_data=train, train_data_format=TrainDataFormat.CHAT)
    except Exception as exc:
        raise FinetuneUnavailable(f"{model}: {' '.join(str(exc).split())[:200]}") from exc
    try:
        result = job.result()
    except Exception as exc:
        result = exc
    if isinstance(result, BaseException) or not hasattr(result, "model"):
        # DSPy's job returns the failure as its result (e.g. a TypeError) instead of raising it
        text = " ".join(str(result).split())[:200]
        raise FinetuneUnavailable(f"{model}: the provider's fine-tuning job failed: {type(result).__name__}: {text}")
    return result.model
