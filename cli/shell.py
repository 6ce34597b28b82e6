"""The interactive shell: prompt_toolkit session, completion, history, chat mode, Ctrl-C handling."""

from __future__ import annotations

import json
import logging
from typing import Callable, Iterable, Optional

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console

from agents import results as r
from agents.chat_session import ChatSession
from agents.decision_agent import DecisionAgent, describe, means_every
from agents.executor_agent import Executor
from agents.help_examples import completion_names
from agents.intent_table import SPECS, completion_words, many_models, runs_as_understood
from agents.intents import Intent
from cli.render import render
from lqmf.base.progress import Progress
from lqmf.base.units import format_bytes, plural

log = logging.getLogger("cli")

YES = frozenset({"y", "yes"})
NO = frozenset({"", "n", "no"})
NOT_RUN = "Not run. Change the request (method, level, as NAME) and try again."


class SecretSafeHistory(FileHistory):
    """The shell history file, without lines that carry a secret (a key typed into `add endpoint`):
    such a line is refused anyway, and must not be kept on disk."""

    def store_string(self, string: str) -> None:
        from agents.endpoint_commands import carries_key

        if not carries_key(string):
            super().store_string(string)

class ShellCompleter(Completer):
    """Command phrases at the start of a line; after that, the model names the line's command would run on."""

    def __init__(self, model_names: Callable[[str], Iterable[str]]) -> None:
        self.model_names = model_names  # the line before the word being completed -> the names to offer

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor
        word = document.get_word_before_cursor(WORD=True)
        if " " not in text.strip() or not text.strip():
            for phrase in completion_words():
                if phrase.startswith(text.lstrip().lower()):
                    yield Completion(phrase, start_position=-len(text.lstrip()))
        for name in self.model_names(text[:len(text) - len(word)]):
            if name.lower().startswith(word.lower()):
                yield Completion(name, start_position=-len(word))


def key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event) -> None:  # Alt-Enter: a new line inside the input (multi-line prompts)
        event.current_buffer.insert_text("\n")

    return bindings


class Shell:
    """Reads commands, hands them to the executor, answers what it asks, draws the results."""

    def __init__(self, executor: Executor, agent: DecisionAgent, console: Console, as_json: bool = False,
                 session: Optional[PromptSession] = None, interactive: Optional[bool] = None,
                 yes: bool = False) -> None:
        self.executor = executor
        self.yes = yes  # `lqmf --yes`: every line confirmed, as if it ended in --yes
        # Interactive shells confirm plans and prompt for secrets; -c and --script never stop to ask.
        self.interactive = session is None if interactive is None else interactive
        self.agent = agent
        self.console = console
        self.pending = None  # the last command that asked a question with choices: the next line may answer it
        self.typed_instead: Optional[str] = None  # a line typed at a y/N question that is no answer: run it next
        self.as_json = as_json
        self.answers = self._answers()
        names = lambda line: completion_names(executor, line)  # noqa: E731
        history = executor.settings.history_path
        history.parent.mkdir(parents=True, exist_ok=True)
        self.session = session or PromptSession(
            history=SecretSafeHistory(str(history)), completer=ShellCompleter(names), key_bindings=key_bindings(),
            complete_while_typing=False,
        )

    # -- one command ----------------------------------------------------------------------------------
    def run_line(self, line: str) -> r.Result:
        """Parse, execute and draw one line; chat mode and one-shot prompts happen here too."""
        command = self._answer(line)
        if command is None and self.pending is not None and line.strip() and not self.as_json:
            self._say(f"not done: {self.pending.question}")  # a new command instead of an answer
        command = command or self.agent.parse(line)
        command.slots.yes = command.slots.yes or self.yes
        self.pending = None
        typed_yes = command.slots.yes
        if runs_as_understood(command) and not self.as_json:
            self._say(f"(understood: {describe(command)})")  # corrected words, read-only: it runs, saying how read
        result = self._follow(command, self._dispatch(command), typed_yes)
        if self.as_json:
            self.console.print_json(json.dumps({"command": command.to_dict(), "result": result.to_dict()}, default=str))
        else:
            render(result, self.console)
        if isinstance(result, r.Question) and result.choices:
            self.pending = command  # the next line may answer it: a number or a name
        if isinstance(result, r.ChatStart) and not self.as_json:
            if result.prompt:
                self.reply(result.session, result.prompt)
            else:
                self.chat_mode(result.session)
        typed, self.typed_instead = self.typed_instead, None
        return self.run_line(typed) if typed is not None else result

    def _ask(self, question: str) -> bool:
        """Whether a y/N question was answered yes; a line that is no answer ("list models") is kept in
        typed_instead, to run as the new command it is once this one is reported not done."""
        answer = self.session.prompt(f"{question} ").strip()
        if answer.lower() not in YES | NO:
            self.typed_instead = answer
        return answer.lower() in YES

    def _not_done(self, question: str, otherwise: str) -> str:
        """What a no says: `otherwise`, or which question a new command passed over."""
        return f"not done: {question.replace(' [y/N]', '')}" if self.typed_instead is not None else otherwise

    def _say(self, text: str) -> None:
        self.console.print(text, style="dim", markup=False, highlight=False)

    def _answer(self, line: str):
        """The pending question's command with its model filled in, when line answers it (a number or a name)."""
        pending, text = self.pending, line.strip()
        if pending is None or not text:
            return None
        choices = pending.choices
        chosen = None
        if pending.alternatives:  # "Did you mean: 1) ... 2) ...": the reading chosen by number or as worded
            numbered = text.isdigit() and 1 <= int(text) <= len(pending.alternatives)
            worded = [i for i, c in enumerate(choices) if c.lower() == text.lower()]
            return pending.alternatives[int(text) - 1 if numbered else worded[0]] if numbered or worded else None
        if text.isdigit() and 1 <= int(text) <= len(choices):
            chosen = choices[int(text) - 1]
        elif SPECS[pending.intent].every and means_every(text):  # "all of them": every model it can run on
            pending.slots.every, pending.slots.model, pending.slots.models = True, None, []
            pending.question, pending.choices = None, []
            pending.text = f"{pending.text.strip()} {text}"
            return pending
        elif self.agent.parse(text).intent is not Intent.UNKNOWN:
            return None  # a command of its own ("list models", "q"): the question is dropped
        else:
            exact = [c for c in choices if c.lower() == text.lower()]
            partial = [c for c in choices if text.lower() in c.lower()]
            chosen = (exact or (partial if len(partial) == 1 else [None]))[0]
        if chosen is None:
            return None
        slots = pending.slots
        if many_models(pending.intent):
            slots.models = [*slots.models, chosen]
            slots.model = slots.models[0]
        else:
            slots.model = chosen
        pending.question, pending.choices = None, []
        pending.text = f"{pending.text.strip()} {chosen}"
        return pending

    def _answers(self) -> frozenset[str]:
        """What this face asks its person between a two-step command's steps (agents/intent_table.py's TwoStep):
        a terminal asks everything; -c and --script show a plan and run it; --json (for programs) shows nothing
        between plan and run, but an interactive one still reads login's token."""
        asks = set() if self.as_json else {"plan"}
        if self.interactive:
            asks |= {"secret"} if self.as_json else {"model", "secret"}
        return frozenset(asks)

    def _dispatch(self, command) -> r.Result:
        """Run a command with the feedback its intent needs (a question is answered as it is)."""
        if command.question:
            return self.executor.execute(command)  # the question
        return self._fed(command, lambda progress: self.executor.execute(command, progress, answers=self.answers))

    def feedback(self, intent: Intent) -> Optional[tuple[str, str]]:
        """What is drawn while an intent's work runs here, read from its table entry: ("bar" | "spinner", label);
        a plan's bar while it is made; None for --json (for programs: nothing drawn) and the intents that just run."""
        spec = SPECS[intent]
        if self.as_json:
            return None
        if spec.two_step is not None and spec.two_step.asks == "plan":
            return "bar", "planning"
        if spec.progress == "bar":  # benchmark, compare, download, embed ...
            return "bar", intent.value.split("_")[0].lower()
        if spec.progress == "spinner":
            return "spinner", intent.value.replace("_", " ").lower()
        return None

    def _fed(self, command, work: Callable[[Optional[Progress]], r.Result]) -> r.Result:
        """work(progress) under the feedback its intent gets here."""
        kind, label = self.feedback(command.intent) or (None, "")
        if kind == "bar":
            return self._with_progress(work, label)
        if kind == "spinner":
            with self.console.status(f"{label} …"):
                return work(None)
        return work(None)

    def _with_progress(self, work: Callable[[Progress], r.Result], first: str) -> r.Result:
        """Run work with a progress callback that advances a bar (Ctrl-C stops it; runs are recorded incomplete)."""
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        with Bars(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=self.console,
                  transient=True) as bars:
            task = bars.add_task(f"{first} …", total=None, count="")

            def advance(what: str, done: int, total: int) -> None:
                count = (f"{format_bytes(done)}/{format_bytes(total)}" if what.startswith("download")
                         else f"{done}/{total}")
                bars.update(task, description=what, completed=done, total=total or None, count=count)

            return work(advance)

    # -- two-step commands: the executor asks, the shell asks its person, the executor goes on ------------------
    def _follow(self, command, result: r.Result, typed_yes: bool) -> r.Result:
        """Answer what the result asks, for as long as it asks (a yes to a guess, then a plan's yes, a model...).

        Only a typed --yes skips a plan's question: a yes to "Did you mean: quantize ...?" is no yes to the plan.
        """
        while True:
            reply = self._reply(result, typed_yes)
            if not isinstance(reply, str):
                return result if reply is None else reply
            result = self._answered(command, result, reply)

    def _answered(self, command, pending: r.Result, reply: str) -> r.Result:
        """The executor's answer to a reply, under the feedback it needs: a confirmed command its intent's, a plan
        run its progress bar."""
        def work(progress: Optional[Progress]) -> r.Result:
            return self.executor.answer(command, pending, reply, progress, answers=self.answers)

        if isinstance(pending, r.QuantizePlan):
            return self._with_progress(work, "quantizing")
        return self._fed(command, work) if isinstance(pending, r.Confirm) else work(None)

    def _reply(self, result: r.Result, typed_yes: bool):
        """The person's reply to what the result asks (a plan is drawn first); a Result when the answer is no; None
        when it asks nothing this face can ask (-c and --json report a Confirm as it is)."""
        if isinstance(result, r.Confirm) and self.interactive and not self.as_json:
            question = result.question if "[y/N]" in result.question else f"{result.question} [y/N]"
            return "yes" if self._ask(question) else r.Message(text=self._not_done(result.question, "Not done."))
        if isinstance(result, r.QuantizePlan) and result.runnable and "plan" in self.answers:
            render(result, self.console)
            if self.interactive and not typed_yes and not self._ask("Run this plan? [y/N]"):
                return r.Message(text=self._not_done("Run this plan?", NOT_RUN))
            return "yes"
        if isinstance(result, r.ChooseModel):
            for line in (result.question, *(f"  {n}. {model}" for n, model in enumerate(result.models, 1))):
                self.console.print(line, markup=False, highlight=False)
            return self.session.prompt("Model (a number or a name; empty to cancel): ")
        if isinstance(result, r.NeedsSecret):
            return self.session.prompt(result.prompt, is_password=True)
        return None

    # -- chat -------------------------------------------------------------------------------------------
    def reply(self, chat: ChatSession, text: str) -> None:
        """Stream one reply; Ctrl-C stops it and keeps the shell."""
        job = chat.send(text)
        if chat.fell_back:  # the default model's chain moved on: say so before the reply, as HTTP's header does
            self.console.print(chat.fell_back, style="yellow", markup=False, highlight=False)
        parts: list[str] = []
        final = None
        try:
            for chunk in job:
                if chunk.text:
                    parts.append(chunk.text)
                    self.console.out(chunk.text, end="", highlight=False)
                if chunk.finish_reason is not None:
                    final = chunk
        except KeyboardInterrupt:
            job.cancel()
            for chunk in job:  # drain to the final chunk: the worker stops within one token
                if chunk.finish_reason is not None:
                    final = chunk
            self.console.print("\n[yellow]stopped[/yellow]")
        self.console.out("")
        if final is not None:
            chat.record(text, "".join(parts), final.timings, final.finish_reason != "cancelled")
            t = final.timings
            self.console.print(f"[dim]{plural(t.completion_tokens, 'token')} in {t.total_s:.2f} s, "
                               f"{t.tokens_per_second:.1f} tokens/s ({final.finish_reason})[/dim]")

    def chat_mode(self, chat: ChatSession) -> None:
        self.console.print(f"Chatting with [bold]{chat.model}[/bold]. /exit to leave, /help for commands.")
        while True:
            try:
                text = self.session.prompt(f"{chat.model}> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
            if not text.strip():
                continue
            if ChatSession.leaves(text):  # plain "exit" / "quit" / "bye" leave too: nobody means them as a prompt
                self.console.print("leaving chat")
                return
            if text.strip().startswith("/"):
                outcome = chat.slash(text.strip())
                self.console.print(outcome.message)
                if outcome.leave:
                    return
                continue
            try:
                self.reply(chat, text)
            except KeyboardInterrupt:  # before the first token (loading, queueing): stay in chat
                self.console.print("\n[yellow]stopped[/yellow]")
            except Exception as exc:  # a failed reply must never end the shell
                self._show_error(exc)

    # -- the loop -----------------------------------------------------------------------------------------
    def loop(self) -> None:
        self.console.print("LQMF shell. Type [bold]help[/bold] for commands, [bold]exit[/bold] to quit.")
        self.run_line("list models")
        if self.agent.meaning is not None:
            # Only now: its imports would hold the interpreter while the first screen is drawn. Until it is
            # loaded (seconds) the word rules read what is typed.
            self.agent.meaning.start()
        while True:
            try:
                line = self.session.prompt("lqmf> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not line.strip():
                continue
            try:
                result = self.run_line(line)
            except KeyboardInterrupt:
                self.console.print("[yellow]cancelled[/yellow]")
                continue
            except Exception as exc:  # the shell survives anything a command does
                self._show_error(exc)
                continue
            if isinstance(result, r.Exit):
                break

    def _show_error(self, exc: Exception) -> None:
        if self.executor.settings.debug:
            raise exc
        log.exception("command failed")
        render(r.ErrorResult(message=str(exc), hint="see logs/lqmf.log (LQMF_DEBUG=1 shows the traceback)"),
               self.console)
