"""A model's tool set made unambiguous before anything is built on it.

Two tools with one name (T003) or two parameters with one name make every call to them
ambiguous, and a per-segment schema (`signatures.conversation.conversation_over`) needs
one object per name. Rather than pay for a conversation and reject it afterwards, the
program settles each case deterministically and says what it did:
- a tool defined again under the same name: the first definition wins; parameters only
  the later one has are added to it;
- a parameter listed twice in one tool: the first wins;
- a parameter that would make the user type a secret (rule T007, conventions.SECRETS):
  dropped, since no tool may take one.
"""

from __future__ import annotations

from gem_synth.programs.validator import is_secret_parameter
from gem_synth.signatures.drafts import ToolSpec


def normalise_tools(specs: list[ToolSpec]) -> tuple[list[ToolSpec], list[str]]:
    """(tool set with unique tool and parameter names and no secret parameter, one note per change).

    Order is kept: tools in the order of their first definition, parameters in the
    order first seen. The notes are one line each, e.g. "tool `submit_claim` defined 2
    times: merged (added `channel`)".
    """
    notes: list[str] = []
    merged: dict[str, ToolSpec] = {}
    counts: dict[str, int] = {}
    added: dict[str, list[str]] = {}
    for spec in specs:
        counts[spec.name] = counts.get(spec.name, 0) + 1
        if spec.name not in merged:
            merged[spec.name] = spec.model_copy(deep=True)
            continue
        have = {p.name for p in merged[spec.name].parameters}
        for p in spec.parameters:
            if p.name not in have:
                merged[spec.name].parameters.append(p.model_copy())
                have.add(p.name)
                added.setdefault(spec.name, []).append(p.name)
    for name, n in counts.items():
        if n > 1:
            extra = added.get(name)
            notes.append(f"tool `{name}` defined {n} times: merged"
                         + (f" (added {', '.join(f'`{p}`' for p in extra)})" if extra else " (first definition kept)"))
    out = []
    for spec in merged.values():
        seen: set[str] = set()
        params = []
        for p in spec.parameters:
            if p.name in seen:
                notes.append(f"parameter `{spec.name}.{p.name}` listed twice: first kept")
                continue
            seen.add(p.name)
            if is_secret_parameter(p.name):
                notes.append(f"parameter `{spec.name}.{p.name}` dropped: a tool never takes a secret")
                continue
            params.append(p)
        out.append(spec.model_copy(update={"parameters": params}))
    return out, notes
