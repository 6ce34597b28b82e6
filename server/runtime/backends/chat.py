"""Chat templates: the model's own (Jinja, sandboxed), or a documented ChatML fallback."""

from __future__ import annotations

from typing import Optional

Message = dict[str, str]

# Used only when a model ships no template; ChatML is what most small instruct models expect.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ROLES = ("system", "user", "assistant", "tool")


def validate_messages(messages: list[Message]) -> None:
    """Raise ValueError with what is wrong when a conversation is malformed."""
    if not messages:
        raise ValueError("the conversation is empty: send at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} needs a string 'content'")
        if m.get("role") not in ROLES:
            raise ValueError(f"message {i} has role {m.get('role')!r}; use one of {', '.join(ROLES)}")


def render_chat(template: Optional[str], messages: list[Message], *, bos_token: str = "", eos_token: str = "") -> str:
    """Render a conversation with a Jinja chat template in a sandbox, adding the generation prompt."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    validate_messages(messages)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message: str) -> None:
        raise ValueError(f"the chat template refused the conversation: {message}")

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template or FALLBACK_TEMPLATE).render(
        messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token,
    )
