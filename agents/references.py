"""Which of the names a line gives it acts on: "load B, not A" acts on B (shared by every reader of a line)."""

from __future__ import annotations

import re
from typing import Optional

# Not "from" or "than": "drifted from A" and "faster than B" name the reference and the other side. "now that A
# works, delete B", "I already did A", "skip A" and "relative to B rather than to A" set A aside.
SET_ASIDE = (r"(?:not|(?:instead\s+of|rather\s+than)(?:\s+(?:to|with|on|against|for|over))?|keep|keeping|forget|"
             r"except|leave|leaving|skip|skipping|"
             r"ignore|ignoring|exclude|excluding|now\s+that|since|(?:the\s+)?same\s+as|just\s+like|similar\s+to|"
             r"stop\s+(?:using|defaulting\s+to)|(?:don'?\s?t|do\s+not)\s+[a-z]+(?:\s+(?:with|about|on))?|already\s+(?:did|ran|benchmarked|"
             r"tested|measured|have\s+(?:numbers|figures|results)\s+for))\s+(?:the\s+)?(?:model\s+)?")
# "I don't need A anymore": A is what the command is for, not set aside.
NO_LONGER = r"(?:don'?\s?t|do\s+not)\s+(?:need|want|use)\s+(?:the\s+)?{}\s+(?:any\s?more|any\s+longer)\b"
# A correction: what follows it replaces what came before ("benchmark A - no wait, B", "A, make that B").
# ("I mean" is one only between commas, "A, I mean, B": "hurt A? I mean ppl and KL vs B" explains.)
CORRECTION = re.compile(r"\b(?:no,?\s+wait|wait,?\s+no|actually,?\s+no|no,?\s+actually|scratch\s+that|make\s+that|"
                        r"correction|no,?\s+sorry|sorry,?\s+no|sorry,?\s+i\s+mean|oops|or\s+rather)\b|(?<=[,;])\s*no\s*(?=[,;])|"
                        r"(?<=[,;])\s*i\s+mean\s*(?=,)|"
                        r"\s-+\s*no\b", re.I)
# After the name: "drop A from memory, B can stay".
# (Not "A stays close to B": that is how near A is, and A is acted on.)
STAYS = (r"\s+(?:can|may|should|will)\s+(?:stay|remain)|\s+(?:stays|remains)(?=\s*(?:[,.;!?]|$|\s+(?:loaded|put|"
         r"there|here|in\b|on\b|as\b|where\b|alone\b)))")


def acted_on(line: str, refs: list[str]) -> list[str]:
    """The references a command acts on, when a line names others to set aside: "load B, not A", "unload A but
    keep B", "forget A, chat with B", "I meant B" (the one meant). Unchanged when that would leave none."""
    if len(refs) < 2:
        return refs
    meant = [ref for ref in refs if re.search(rf"\bmeant\s+(?:the\s+)?{re.escape(ref)}", line, re.I)]
    if meant:
        return meant
    if (after := corrected(line, refs)) != refs:
        return after
    moved = re.search(r"\bfrom\s+(\S+)\s+to\s+(\S+)", line, re.I)  # "switch the default from A to B": B
    if moved and {moved.group(1).rstrip(",."), moved.group(2).rstrip(",.?!")} <= set(refs):
        return [moved.group(2).rstrip(",.?!")]
    kept = [ref for ref in refs if (not re.search(rf"\b{SET_ASIDE}{re.escape(ref)}(?![\w-]|\.\w)", line, re.I)
                                    or re.search(NO_LONGER.format(re.escape(ref)), line, re.I))
            and not re.search(rf"(?<![\w.-]){re.escape(ref)}(?:{STAYS})", line, re.I)] or refs
    # "I know A is quicker, but today I want to chat with B": what follows the last "but" is what is asked.
    *before, after = re.split(r"\bbut\b", line, flags=re.I)
    if before and len(kept) > 1 and not re.match(r"\W*(?:also|too|and|as\s+well)\b", after, re.I):
        later = [ref for ref in kept if names(after, ref)]
        if later and len(later) < len(kept) and all(names(" ".join(before), ref) for ref in kept if ref not in later):
            return later
    return kept


def corrected(line: str, refs: list[str]) -> list[str]:
    """ "benchmark A - no wait, B": what follows a correction replaces as many names said last before it."""
    *said_first, correction = CORRECTION.split(line)
    if said_first and (instead := [ref for ref in refs if names(correction, ref)]) and len(instead) < len(refs):
        first = " ".join(said_first)
        before = sorted((ref for ref in refs if ref not in instead and names(first, ref)),
                        key=lambda ref: first.lower().rfind(ref.lower()))
        return before[:max(0, len(before) - len(instead))] + instead
    return refs


def listed_together(line: str, refs: list[str]) -> bool:
    """Whether the names stand in one list ("A and B", "A, B & C", "both A and B"): nothing but joints between them.
    ("remove A? we have B now" names B as context, not as a second thing to remove.)"""
    found = sorted((m.start(), m.end()) for ref in refs
                   for m in [re.search(rf"(?<![\w.-]){re.escape(ref)}(?![\w-])", line, re.I)] if m)
    return len(found) == len(refs) and all(
        re.fullmatch(r"\s*(?:,\s*)?(?:(?:and|&|plus|as\s+well\s+as)\s+)?(?:also\s+)?(?:the\s+)?", line[end:start], re.I)
        for (_, end), (start, _) in zip(found[:-1], found[1:], strict=True))


def names(text: str, ref: str) -> bool:
    """Whether the text names the reference as a whole word ("demo-q8_0", not "demo-q8_0-copy")."""
    return re.search(rf"(?<![\w.-]){re.escape(ref)}(?![\w-])", text, re.I) is not None


# "I just loaded the llama, now let me talk to it", "before I delete smol-f16, show me its manifest": a clause that
# tells what was (or will be) done, then the request, which points back at the clause's model.
STORY_THEN = re.compile(
    r"^\s*(?P<story>(?:(?:before|after|once|since)\s+(?:i|we|the|our|my|last|this|yesterday)\s+|(?:i|we)\s+(?:just\s+|already\s+|finally\s+)?"
    r"(?:[a-z]+ed|ran|made|got|did|built|took)\b)[^,;]*)[,;]\s*(?:(?:and|but)\s+)?(?:(?:now|then|so|next)\b,?\s*)?"
    r"(?P<request>(?P<lead>(?:please\s+|pls\s+|can\s+you\s+|could\s+you\s+|let\s+me\s+|let'?s\s+|"
    r"go\s+ahead\s+and\s+|i(?:'d|\s+would|\s+want|\s+need)(?:\s+(?:like|love))?\s+to\s+)*)(?P<verb>[a-z]+)\b.*)$",
    re.I)
# Verbs that start a request though no command is theirs alone: "..., forget that endpoint", "..., tell me about it".
IMPERATIVES = frozenset({"forget", "tell", "feed", "give", "send", "ask", "try", "make", "put", "drop", "get", "throw",
                         "free", "kill", "open"})
POINTS_BACK = re.compile(r"\b(?:its|it|them|th(?:at|is)\s+one|th(?:at|is|e)\s+(?:model|endpoint))\b", re.I)


def after_the_story(line: str, command_words: frozenset[str]) -> Optional[tuple[str, str]]:
    """(the story, the request) of a line that tells first and asks after; None for any other line."""
    match = STORY_THEN.match(line)
    if match and (match.group("lead") or match.group("verb").lower() in command_words | IMPERATIVES):
        return match.group("story"), match.group("request")
    return None


def pointed_at(request: str, model: str) -> Optional[str]:
    """The request with its pointer back ("it", "its", "that one") as the model's name; None when it has none."""
    return POINTS_BACK.sub(model, request, count=1) if POINTS_BACK.search(request) else None


# A first clause that asks nothing of the shell, then the request:
# - taken back: "is A still there? actually never mind that, just list all of them" (not "scratch that": "benchmark
#   A, scratch that, B" corrects a name, see CORRECTION);
# - a purpose: "to test whether q4_1 hurts perplexity more, quantize smol-f16 to q4_k_m as well";
# - what is not needed: "no need to load anything or start the server - just show me every model".
ASIDE = re.compile(
    r"(?:\b(?:never\s*mind|nvm|forget\s+(?:that|it|what\s+i\s+(?:said|asked))|disregard\s+that)(?:\s+(?:that|this|it))?|"
    r"^\s*(?:in\s+order\s+)?to\s+(?:test|check|see|verify|find\s+out|measure|make\s+sure|confirm|prove|settle|"
    r"prepare|answer)\b[^,;\u2014\u2013]*|^\s*(?:there'?s\s+)?no\s+need\s+to\b[^,;\u2014\u2013]*)"
    r"\s*(?:[,.;:!\u2014\u2013]+|\s-+)\s*(?:(?:just|instead|actually|rather|only|ok|okay)\b,?\s*)*"
    r"(?P<rest>\w+\s+\S.*)$", re.I)


def after_an_aside(line: str) -> Optional[str]:
    """What a line asks after a first clause that asks nothing (taken back, a purpose, what is not needed)."""
    match = ASIDE.search(line)
    return match.group("rest") if match else None
