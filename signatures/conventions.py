"""The conventions every stage that writes or judges a conversation must state the same way.

A rule said differently in two prompts is two rules: the models answering gem-synth's
requests reported exactly that (text beside tool calls, what "grounded" means, where a
persona goes). Each convention is written once here and spliced into the signatures'
instructions with `instruction()`, so the generator, the refiner, the synthesizer and the
judge read the same words. `programs/validator.py` checks the same definitions.
"""

from __future__ import annotations

import inspect

ROUNDS = """\
Rounds: a conversation is a system prompt and rounds. A round starts with what the user
says, then the assistant's steps in order, and ends with the assistant's text reply to
the user (an answer, a question, or a request to confirm). A step is one tool call
together with the result the tool returns, or, rarely, a short text the assistant says
before its next call. The assistant reads each result before its next step; the user
speaks again only in the next round. Every call names a tool of the tool set, with its
arguments as a JSON object of exactly that tool's parameters: required ones always
present, values of the declared types, and an optional one that is not used left out
(or written as null where the answer's schema lists every parameter). A result is the tool's JSON answer written as
text: its data, or an error object. Call ids, roles and the pairing of each call with its
result are added by the program: write none of them."""

GROUNDING = """\
Grounding: every argument value in a tool call must come from the conversation before
that call: the system prompt, what the user said, or what an earlier tool result
returned. Normalising what was said is grounded and expected; inventing is not:
- a date or time said in words ("March 3rd", "next Friday" given the current date in the
  system prompt) written as ISO 8601 (`2026-03-03`);
- a number said in words or with separators ("two", "1,200") written as a number;
- a name or phrase in another order or case ("Smith, Anna" for "Anna Smith");
- the user's wording mapped to an enum value ("economy class" to `economy`);
- a value computed from grounded values (a sum of amounts, a count of records, a date
  plus a number of days).
An ID, name, amount, date or code that appears nowhere before the call, and cannot be
computed from what does, is invented. Users speak naturally: never make a user spell out
an ISO date, an exact enum value or a machine code just so that a value looks grounded."""

SECRETS = """\
Secrets: no tool takes a password, PIN, passcode, CVV, security answer or full card
number as a parameter, and no one asks for or types one into the conversation. Identify
users by non-secret facts (an account or member number, a date of birth, the email on
file) or through a tool that starts verification outside the chat (a code or sign-in
link sent to the registered phone or email, which the user completes there). When the
source text has users sign in with a password or PIN, that sign-in happens outside the
chat: model it as such a verification tool, never as a parameter."""

CONFIRMATION = """\
Confirmation before writes: before any write (create, update, submit, cancel, delete) the
assistant states what it will do, with the values, and the user agrees in a user turn. A
user turn that itself orders that exact write with every value already stated (\"cancel
booking BK-12\") counts as the agreement; anything the assistant adds or infers (a date,
an amount, a choice between records) needs a yes first."""

PERSONA = """\
System prompt and persona: the system prompt holds only what the deployed assistant knows
before the conversation starts: its role, the domain rules, the database schema and the
current date. It never describes the particular user. The user's persona (who they are,
what they know, how they talk, what they want) shows only in the user's own turns; the
assistant learns who the user is from what they say and from tool results, after
identifying them."""

PATTERN_DEFINITIONS = """\
- `rule_conflict`: the user wants something a domain rule forbids; the assistant holds
  the rule and explains it.
- `error_recovery`: a tool returns an error and the assistant recovers sensibly (corrects
  the call, asks the user, or takes another valid path).
- `clarification`: the assistant asks about an ambiguous request before acting.
- `multi_hop_reasoning`: the assistant combines several tool results to reach an answer.
- `rule_awareness`: the assistant checks or cites a domain rule before acting.
- `long_noisy_context`: a tool result lists many realistic but irrelevant records, and the
  assistant picks the right one.
- `clarification_inferable`: an ambiguity the assistant resolves from context without
  asking.
- `clarification_not_inferable`: an ambiguity the assistant must ask the user about.
- `no_tool_available`: the user asks for something no tool can do, and the assistant
  says so honestly instead of pretending.
- `user_guided_steps`: the assistant guides the user through steps only the user can do
  (sign a form, check their email, visit an office).
- `multi_constraint_turn`: one user turn carries several constraints at once (dates,
  budget, limits, preferences) that the assistant must all honour.
- `pitfall`: a plausible but wrong action the assistant avoids (acting on the wrong
  record, skipping a rule, writing without confirmation)."""

_PARTS = {"rounds": ROUNDS, "grounding": GROUNDING, "secrets": SECRETS, "confirmation": CONFIRMATION,
          "persona": PERSONA, "pattern_definitions": PATTERN_DEFINITIONS}


def instruction(template: str) -> str:
    """A signature's instruction: `template` dedented, with `{grounding}`-style slots filled.

    Slots: rounds, grounding, secrets, confirmation, persona, pattern_definitions. A slot
    stands alone on its line; the convention replaces that line, keeping its indentation.
    Raises KeyError for an unknown slot.
    """
    lines = []
    for line in inspect.cleandoc(template).splitlines():
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped[1:-1].isidentifier():
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + part for part in _PARTS[stripped[1:-1]].splitlines()]
        else:
            lines.append(line)
    return "\n".join(lines)
