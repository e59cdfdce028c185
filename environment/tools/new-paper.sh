#!/usr/bin/env bash
# Scaffolds paper NN on the paper contract, from the templates in environment/tools/templates/:
#   lib/AttentionLab/Papers/<Name>/<Name>Experiment.cs, <Name>Result.cs (Claims()), <Name>Ops.cs, <Name>Naive.cs (stubs)
#   tests/AttentionLab.Tests/Papers/<Name>Tests.cs
#   notebooks/NN-<slug>.ipynb (built by nbgen.py from templates/notebook.txt)
#   tests/expected-claims.csv: the stub's claim rows; README.md: the paper's row links the notebook ("in progress")
# Nothing is registered by hand: the catalogue (Core/PaperCatalog) finds the experiment by reflection, and the notebook
# tests find the notebook by its file name.
#
# Usage: environment/tools/new-paper.sh NN Name [--slug SLUG] [--title "TITLE"] [--repo DIR]
#   NN     paper number (1–99, written with two digits)
#   Name   the folder and namespace (PascalCase: Titans, SinkLora)
#   SLUG   the notebook name after "NN-" (default: the README's planned notebook for NN, else Name in kebab-case)
#   TITLE  the paper's short title (default: the README's table row for NN, else Name)
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && usage 0
[ $# -ge 2 ] || usage

number=$1; name=$2; shift 2
slug=""; title=""; repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
while [ $# -gt 0 ]; do
  case "$1" in
    --slug) slug=${2:?--slug needs a value}; shift 2 ;;
    --title) title=${2:?--title needs a value}; shift 2 ;;
    --repo) repo=${2:?--repo needs a value}; shift 2 ;;
    *) echo "new-paper.sh: unknown option '$1'" >&2; usage ;;
  esac
done

[[ "$number" =~ ^[0-9]{1,2}$ ]] && [ "$((10#$number))" -ge 1 ] || { echo "new-paper.sh: NN must be a number from 1 to 99, got '$number'" >&2; exit 2; }
[[ "$name" =~ ^[A-Z][A-Za-z0-9]*$ ]] || { echo "new-paper.sh: Name must be PascalCase letters and digits (e.g. Titans), got '$name'" >&2; exit 2; }
nn=$(printf '%02d' "$((10#$number))")
templates="$repo/environment/tools/templates"
readme="$repo/README.md"

# The README's row for NN: | NN | Title | Family | Grade | `NN-slug.ipynb` | library | paper or code | status |
row=$(grep -E "^\| $nn \|" "$readme" || true)
if [ -z "$slug" ]; then
  slug=$(sed -nE 's/.*`'"$nn"'-([a-z0-9-]+)\.ipynb`.*/\1/p' <<<"$row")
  [ -n "$slug" ] || slug=$(sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' <<<"$name" | tr '[:upper:]' '[:lower:]')
fi
[[ "$slug" =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]] || { echo "new-paper.sh: slug must be kebab-case, got '$slug'" >&2; exit 2; }
if [ -z "$title" ]; then
  title=$(awk -F'|' -v n=" $nn " '$2 == n { gsub(/^ +| +$/, "", $3); print $3 }' "$readme")
  [ -n "$title" ] || title=$name
fi
case "$title" in *'"'*|*'\'*) echo "new-paper.sh: the title may not contain quotes or backslashes" >&2; exit 2 ;; esac

folder="$repo/lib/AttentionLab/Papers/$name"
test_file="$repo/tests/AttentionLab.Tests/Papers/${name}Tests.cs"
notebook="$repo/notebooks/$nn-$slug.ipynb"
for existing in "$folder" "$test_file" "$notebook"; do
  [ -e "$existing" ] && { echo "new-paper.sh: $existing already exists; nothing written" >&2; exit 1; }
done
if ls "$repo/notebooks/$nn-"*.ipynb >/dev/null 2>&1; then
  echo "new-paper.sh: paper $nn already has a notebook: $(ls "$repo/notebooks/$nn-"*.ipynb); nothing written" >&2; exit 1
fi
if grep -qE "^$((10#$nn)),[^,]+,(exactness|claim|reported),[^,]+$" "$repo/tests/expected-claims.csv"; then
  echo "new-paper.sh: tests/expected-claims.csv already lists paper $((10#$nn)); nothing written" >&2; exit 1
fi
command -v python3 >/dev/null || { echo "new-paper.sh: python3 is needed to build the notebook (environment/tools/nbgen.py)" >&2; exit 1; }

# Title for C# strings and sed: escape the sed metacharacters & and |.
sed_title=$(sed -e 's/[&|]/\\&/g' <<<"$title")
render() {
  sed -e "s|__NAME__|$name|g" -e "s|__NN__|$nn|g" -e "s|__NUMBER__|$((10#$nn))|g" -e "s|__SLUG__|$slug|g" -e "s|__TITLE__|$sed_title|g" "$1"
}

mkdir -p "$folder"
render "$templates/Experiment.cs.txt" > "$folder/${name}Experiment.cs"
render "$templates/Result.cs.txt" > "$folder/${name}Result.cs"
render "$templates/Method.cs.txt" > "$folder/${name}Ops.cs"
render "$templates/Naive.cs.txt" > "$folder/${name}Naive.cs"
render "$templates/Tests.cs.txt" > "$test_file"
source_text=$(mktemp)
trap 'rm -f "$source_text"' EXIT
render "$templates/notebook.txt" > "$source_text"
python3 "$repo/environment/tools/nbgen.py" "$source_text" "$notebook"
python3 "$repo/environment/tools/nblib.py" "$notebook" >/dev/null   # the first code cell: finds the library (templates/library-cell.cs.txt)

# The stub's claim rows, in paper order.
python3 - "$repo/tests/expected-claims.csv" "$((10#$nn))" <<'PY'
import sys
path, paper = sys.argv[1], int(sys.argv[2])
lines = open(path).read().split("\n")
if lines and lines[-1] == "": lines.pop()
rows = [f"{paper},headline,claim,not shown"]
at = len(lines)
for i, line in enumerate(lines):
    head = line.split(",", 1)[0]
    if head.isdigit() and int(head) > paper:
        at = i; break
lines[at:at] = rows
open(path, "w").write("\n".join(lines) + "\n")
PY

# README: the paper's row links the notebook and says "in progress".
if [ -n "$row" ]; then
  python3 - "$readme" "$nn" "$slug" "$name" <<'PY'
import sys
path, nn, slug, name = sys.argv[1:]
out = []
for line in open(path).read().split("\n"):
    if line.startswith(f"| {nn} |"):
        cells = line.split("|")          # | P | Paper | Family | Grade | Notebook | Library | Paper or code | Status |
        cells[5] = f" [{nn}-{slug}.ipynb](notebooks/{nn}-{slug}.ipynb) "
        cells[6] = f" [{name}](lib/AttentionLab/Papers/{name}) "
        cells[-2] = " in progress "
        line = "|".join(cells)
    out.append(line)
open(path, "w").write("\n".join(out))
PY
fi

echo "P$nn $title → Papers/$name (namespace AttentionLab.Papers.$name), notebook notebooks/$nn-$slug.ipynb"
echo "wrote: ${folder#$repo/}/{${name}Experiment,${name}Result,${name}Ops,${name}Naive}.cs, ${test_file#$repo/}, ${notebook#$repo/}"
echo "added: tests/expected-claims.csv row '$((10#$nn)),headline,claim,not shown'$([ -n "$row" ] && echo "; README row $nn → in progress")"
echo "next: the spec's method beside its naive twin, the experiment (§4), Claims() (§6/§7), the notebook's cells; then"
echo "      ./environment/test.sh --filter FullyQualifiedName~$name  and  ./environment/run.sh --filter $nn-"
