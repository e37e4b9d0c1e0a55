"""A local, scripted OpenAI-compatible chat server: the only stand-in in the test suite.

It stands in for the LLM endpoint (Ollama, vLLM, OpenAI) so the real `openai` + `instructor`
clients are exercised over real HTTP. Each request pops the next scripted answer:
- a dict: returned as the tool call's JSON arguments (a PatchSpec, valid or not);
- a str: returned verbatim as the tool call's arguments (e.g. broken JSON).
Every request body is recorded so tests can read the prompts the framework sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLLM:
    def __init__(self, answers: list[Any], *, prompt_tokens: int = 900, completion_tokens: int = 150) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.base_url = ""

    def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        if not self.answers:
            raise AssertionError("the scripted LLM ran out of answers")
        answer = self.answers.pop(0)
        arguments = answer if isinstance(answer, str) else json.dumps(answer)
        name = body["tools"][0]["function"]["name"] if body.get("tools") else "PatchSpec"
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": f"call_{len(self.requests)}", "type": "function",
                             "function": {"name": name, "arguments": arguments}}
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }

    def all_prompt_text(self) -> str:
        return "\n".join(
            str(message.get("content") or "") for request in self.requests for message in request["messages"]
        )


@contextmanager
def scripted_llm(answers: list[Any], **kwargs: Any) -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM(answers, **kwargs)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            try:
                payload, status = llm.respond(body), 200
            except AssertionError as error:
                payload, status = {"error": {"message": str(error)}}, 500
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    llm.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield llm
    finally:
        server.shutdown()
        server.server_close()
