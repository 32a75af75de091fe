"""Extending a chat template to render tools, in the Hermes / Qwen2.5 convention.

Templates that understand `tools` and `tool_calls` are used as they are. Many small models' templates (SmolLM2's
among them) silently ignore both, which would train the model on empty answers and leave a served model blind to
the tools a request offers. For those, tunemake extends the template (tool_template), and that extended template is
the one that trains, that results/merged and the GGUF carry, and that a server (llama-server --jinja, vLLM) renders
requests with:

- the function specs go into the system message inside <tools></tools>, one JSON object per line;
- each assistant call is written as <tool_call>{"name": ..., "arguments": {...}}</tool_call>;
- a tool result becomes a user turn wrapped in <tool_response></tool_response>.

Servers read calls in this convention back as OpenAI `tool_calls` (llama.cpp's parser recognises the tags).
"""

from __future__ import annotations

from dataclasses import dataclass

SENTINEL = "tunemake_sentinel_fn"


TOOL_INSTRUCTIONS = (
    "You may call one or more functions to answer the user. For each call, reply with a JSON object "
    'with "name" and "arguments" inside <tool_call></tool_call> tags. The functions:'
)


@dataclass(frozen=True)
class ToolSupport:
    tools: bool  # the template renders the `tools` argument
    tool_calls: bool  # the template renders assistant `tool_calls`

    @property
    def native(self) -> bool:
        return self.tools and self.tool_calls


def tool_support(tokenizer) -> ToolSupport:
    """Probe the template: does a sentinel function name survive rendering?"""
    spec = [
        {
            "type": "function",
            "function": {"name": SENTINEL, "description": "", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    user = [{"role": "user", "content": "hi"}]
    call = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": SENTINEL, "arguments": {}}}],
        }
    ]
    return ToolSupport(
        tools=SENTINEL in _safe_render(tokenizer, user, tools=spec),
        tool_calls=SENTINEL in _safe_render(tokenizer, user + call),
    )


def _safe_render(tokenizer, messages, **kwargs) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception:  # a template that raises on an unknown key does not support it
        return ""


OWN_TEMPLATE = "{#- the base model's own template #}"  # where the extension ends and the base's template begins


# Rewrites `messages` before the base template runs: the base's own turns, with tools, calls and tool results as
# text (see the module docstring). `tojson` is json.dumps(ensure_ascii=False) in transformers and llama.cpp alike;
# arguments arrive as a JSON string from OpenAI clients and as an object from training rows.
TOOL_PREAMBLE = r"""{#- tunemake: tools, tool calls and tool results in the Hermes convention -#}
{%- set tm = namespace(messages=[], listing="", block="") -%}
{%- if tools -%}
{%- for tool in tools -%}
{%- set tm.listing = tm.listing ~ ("\n" if not loop.first else "") ~ ((tool.function if tool.function is defined else tool) | tojson) -%}
{%- endfor -%}
{%- set tm.block = 'PREAMBLE' ~ "\n<tools>\n" ~ tm.listing ~ "\n</tools>" -%}
{%- if SYSTEM_ROLE and (not messages or messages[0].role != "system") -%}
{%- set tm.messages = [{"role": "system", "content": tm.block}] -%}
{%- endif -%}
{%- endif -%}
{%- for message in messages -%}
{%- set content = message.content if message.content is string else "" -%}
{%- if SYSTEM_ROLE and loop.first and tm.block and message.role == "system" -%}
{%- set content = content ~ "\n\n" ~ tm.block -%}
{%- elif not SYSTEM_ROLE and tm.block and message.role == "user" -%}
{%- set content = tm.block ~ "\n\n" ~ content -%}
{%- set tm.block = "" -%}
{%- endif -%}
{%- if message.tool_calls -%}
{%- set calls = namespace(text="") -%}
{%- for call in message.tool_calls -%}
{%- set function = call.function if call.function is defined else call -%}
{%- set arguments = function.arguments if function.arguments is string else function.arguments | tojson -%}
{%- set calls.text = calls.text ~ ("\n" if not loop.first else "") ~ '<tool_call>\n{"name": ' ~ (function.name | tojson) ~ ', "arguments": ' ~ arguments ~ '}\n</tool_call>' -%}
{%- endfor -%}
{%- set content = content ~ "\n" ~ calls.text if content else calls.text -%}
{%- endif -%}
{%- if message.role == "tool" -%}
{%- set tm.messages = tm.messages + [{"role": "user", "content": "<tool_response>\n" ~ content ~ "\n</tool_response>"}] -%}
{%- else -%}
{%- set tm.messages = tm.messages + [{"role": message.role, "content": content}] -%}
{%- endif -%}
{%- endfor -%}
{%- set messages = tm.messages -%}
{%- set tools = NO_TOOLS -%}
OWN_TEMPLATE""".replace("PREAMBLE", TOOL_INSTRUCTIONS).replace("OWN_TEMPLATE", OWN_TEMPLATE)


def tool_template(template: str, system_role: bool = True, no_tools: str = "none") -> str:
    """The base's template extended to render `tools`, assistant `tool_calls` and `tool` turns (the module
    docstring's convention). Without a system role (Gemma 2) the tools go at the top of the first user turn. The
    base template then sees no tools: `no_tools` is what it takes for none ("[]" where it loops over them
    unguarded)."""
    return TOOL_PREAMBLE.replace("SYSTEM_ROLE", "true" if system_role else "false").replace("NO_TOOLS", no_tools) + (
        template
    )


def is_extended(tokenizer) -> bool:
    return isinstance(tokenizer.chat_template, str) and tokenizer.chat_template.startswith(TOOL_PREAMBLE[:40])


def extend_tools(tokenizer) -> bool:
    """Give a tokenizer whose template ignores tools or calls the extended one (templates that render both stay as
    they are); True if it did."""
    if not isinstance(tokenizer.chat_template, str) or tool_support(tokenizer).native:
        return False
    user = [{"role": "user", "content": "hi"}]
    system_role = bool(_safe_render(tokenizer, [{"role": "system", "content": "s"}, *user])) or not _safe_render(
        tokenizer, user
    )
    no_tools = "[]" if raises(lambda: tokenizer.apply_chat_template(user, tools=None, tokenize=False)) else "none"
    own, tokenizer.chat_template = (
        tokenizer.chat_template,
        tool_template(tokenizer.chat_template, system_role, no_tools),
    )
    if not tool_support(tokenizer).native:  # a template that cannot render even then: Renderer.prepare says so
        tokenizer.chat_template = own
        return False
    return True


def raises(render, kind: type[Exception] = Exception) -> bool:
    try:
        render()
    except kind:
        return True
    return False
