"""The README's two commands stay true: CI runs the test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_ci_runs_the_readme_test_command():
    quickstart, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install_and_test = tests.split(". .venv/bin/activate && ", 1)[1]
    assert install_and_test in ci.splitlines()
    assert install_and_test.endswith("python -m pytest")


def test_quickstart_command_runs_the_quickstart_config():
    quickstart, _ = readme_commands()
    assert quickstart.endswith("instructrec fit --config configs/quickstart.yaml")
    assert (ROOT / "configs" / "quickstart.yaml").is_file()
    assert "pip install torch==2.13.0 && " in quickstart  # never a CUDA torch resolved by pip
