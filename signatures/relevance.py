"""Stage 1 of GEM: relevance filtering."""

import dspy

from gem_synth.signatures.records import TaskCategory


class RelevanceFilter(dspy.Signature):
    """Decide whether a text segment describes a multi-step operational procedure, and label it.

    A segment is procedural when a person could follow it to get something done by
    interacting with a system, service or organisation: it describes two or more ordered
    steps (sign in, look something up, fill in a form, submit, wait for a decision...),
    and usually the rules, forms, accounts, records or conditions those steps involve.
    How-to guides, help-centre articles, policies that state what must be done and when,
    manuals and forum answers that walk through a fix are typically procedural.

    It is NOT procedural when it only narrates, reports or defines: news, stories,
    opinion, biographies, glossary entries, marketing copy, a list of facts, or a single
    isolated action with nothing before or after it. A recipe or a physical craft with no
    system, record or service involved is not procedural for this purpose either: the
    goal is procedures an assistant could support by calling software tools.

    Judge only from the text given; when in doubt, reject. Labels describe the segment
    whatever the decision, so that rejected segments can be audited too.
    """

    text: str = dspy.InputField(desc="One segment of a document, a few hundred words of plain text.")

    is_procedural: bool = dspy.OutputField(
        desc="True only if the segment describes a multi-step operational procedure a tool-using assistant could carry out or support."
    )
    summary: str = dspy.OutputField(desc="One sentence, at most 25 words, saying what the segment is about.")
    domain: str = dspy.OutputField(
        desc="The subject area in two to four lowercase words, e.g. `health insurance claims`, `airline booking`."
    )
    platform: str = dspy.OutputField(
        desc="The system, product or organisation the steps are done on, e.g. `patient web portal`, `airline mobile app`; `unspecified` if the text names none."
    )
    task_category: TaskCategory = dspy.OutputField(desc="The closest task category; `other` if none fits.")
