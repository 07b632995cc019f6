"""Worker over queue.json (re-read before every job, so the order can change while
it runs): jobs are claimed with an O_EXCL file in claims/, results go where run.py
and seed_steps.py put them. python queue.py"""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
(HERE / "claims").mkdir(exist_ok=True)


def key(j):
    return "_".join(str(v) for v in j).replace("+", "p").replace("/", "")


while True:
    for j in json.loads((HERE / "queue.json").read_text()):
        try:
            os.close(os.open(HERE / "claims" / key(j), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        if j[0] in ("seedproxy", "seedreal"):  # [kind, name, seed, steps, every]
            subprocess.run([sys.executable, "seed_steps.py", *map(str, j[1:])], cwd=HERE,
                           env={**os.environ, "PROXY": "1" if j[0] == "seedproxy" else "0"}, check=False)
        else:
            subprocess.run([sys.executable, "-c", f"import json, run; r = run.run(*{j!r});"
                            "open('results.jsonl', 'a').write(json.dumps(r) + '\\n')"], cwd=HERE, check=False)
        break
    else:
        sys.exit(0)
