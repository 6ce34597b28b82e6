"""Reading llama.cpp's quantizer output: its per-tensor "[ n/ N]" lines, the progress a long step can show."""

from __future__ import annotations

import re
from typing import Callable, Optional

from lqmf.base.progress import Progress

# llama.cpp's quantizer (llama-quantize, and llama_model_quantize through the log callback) starts each
# tensor's line with "[  12/  39] blk.1.attn_q.weight - ...".
TENSOR_PROGRESS = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\]")


def tensor_lines(on_tensor: Optional[Progress]) -> Callable[[str], None]:
    """An on_line for lqmf.base.processes.run_child_lines that reports the "[ n/ N]" tensor lines to `on_tensor`."""

    def on_line(line: str) -> None:
        match = TENSOR_PROGRESS.match(line)
        if match and on_tensor is not None:
            on_tensor("tensors", int(match.group(1)), int(match.group(2)))

    return on_line
