"""The commands README.md shows, for the tests that run them."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The ``python -m encdec...`` lines of README's bash blocks, continuations joined,
    comments dropped (scripts run through the launcher have tests of their own)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if "python -m encdec" in line and "scripts/" not in line and line[0] != "#":
                commands.append(re.sub(r"\s+", " ", line))
    return commands
