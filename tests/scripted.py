"""A scripted DSPy 3.4 engine for unit tests that must force a specific or malformed answer.

It answers per signature: the request's system prompt names the output fields, which
identify the signature; the handler for that signature gets the call's inputs (parsed
from DSPy's `[[ ## field ## ]]` sections) and returns the output fields as a dict (sent
as the JSON DSPy's JSONAdapter expects), a raw string (sent verbatim, e.g. malformed)
or an exception (raised, e.g. a server error). It counts calls per signature and
reports token usage so accounting can be asserted.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import dspy
from dspy.lm15 import Message, Response, ServerError, TextPart, Usage, response_to_events

Handler = Callable[[dict[str, str]], Any]
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.S)


class ScriptedEngine:
    supports_response_schema = True
    supported_params = ("temperature", "max_tokens", "response_format")

    def __init__(self, handlers: dict[type[dspy.Signature], Handler]):
        self.handlers = handlers
        self.calls: Counter[str] = Counter()
        self.tokens_in = 0
        self.tokens_out = 0
        self._lock = threading.Lock()

    def _signature_for(self, system: str) -> type[dspy.Signature] | set[str]:
        listed = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
        names = set(re.findall(r"^\d+\. `(\w+)`", listed, re.M))
        for sig in self.handlers:
            if set(sig.output_fields) == names:
                return sig
        return names

    def answer(self, system: str, user: str, demos: int = 0) -> str:
        """The scripted reply text for one call (raises what a handler returns as an exception).

        Handlers see the parsed inputs plus `__system__` (the instruction as sent) and
        `__demos__` (how many few-shot demos preceded the call). A call from one of DSPy's
        own optimizer programs gets `optimizer_reply`.
        """
        signature = self._signature_for(system)
        if not isinstance(signature, type):
            with self._lock:
                self.calls["optimizer"] += 1
            return optimizer_reply(signature, user)
        inputs = {m.group(1): m.group(2).strip() for m in _SECTION.finditer(user)}
        inputs |= {"__system__": system, "__demos__": demos}
        with self._lock:
            self.calls[signature.__name__] += 1
        answer = self.handlers[signature](inputs)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, str) else json.dumps(answer)

    def complete(self, request) -> Response:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        user = request.messages[-1].text or ""
        text = self.answer(system, user, demos=(len(request.messages) - 1) // 2)
        usage = Usage(input_tokens=len((system + user).split()), output_tokens=len(text.split()))
        with self._lock:
            self.tokens_in += usage.input_tokens
            self.tokens_out += usage.output_tokens
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=usage)

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self):
        pass


def scripted_lm(handlers: dict[type[dspy.Signature], Handler], cache: bool = False) -> tuple[dspy.LM, ScriptedEngine]:
    engine = ScriptedEngine(handlers)
    return dspy.LM("scripted/test", engine=engine, cache=cache, num_retries=0), engine


MAGIC = "MAGIC: write every conversation completely, ending with the assistant's reply."


def optimizer_reply(output_names: set[str], prompt: str) -> str:
    """Answers for DSPy's own optimizer programs: every proposed instruction carries MAGIC.

    GEPA's reflection prompt is plain text asking for the new instruction in a ``` block;
    MIPROv2's proposer and SIMBA's advisor are DSPy signatures with string outputs, except
    SIMBA's `module_advice`, a dict from module name to advice.
    """
    if not output_names:
        return f"```\n{MAGIC}\n```"
    reply: dict[str, Any] = {name: MAGIC for name in output_names}
    if "module_advice" in output_names:
        modules = re.findall(r"[\w.]+\.predict\b", prompt)
        reply["module_advice"] = {m: MAGIC for m in (modules or ["generate.predict"])}
    return json.dumps(reply)


def http_responder(engine: ScriptedEngine):
    """The same scripted answers behind tests.fake_openai.FakeOpenAIServer (an exception becomes a 500)."""
    from tests.fake_openai import completion

    def respond(body):
        messages = body["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        if "Your output fields are" not in system:  # gem-synth's pre-flight check of the model
            return 200, completion("OK", body["model"])
        try:
            demos = (len(messages) - 2) // 2  # system, demo pairs, then the call itself
            return 200, completion(engine.answer(system, messages[-1]["content"], demos), body["model"])
        except ServerError as exc:
            return 500, {"error": {"message": str(exc), "type": "server_error"}}
    return respond


def server_error(message: str = "scripted outage") -> ServerError:
    return ServerError(message, provider="scripted", status=500)
