"""python eval.py --crowd-subset ... (evaluation suite: issue 6, not implemented yet)."""
import sys

if __name__ == "__main__":
    print("eval.py: the evaluation suite is not in repssd yet (issue 6); "
          "what exists now: the geometry core (repssd.priors, repssd.matcher)", file=sys.stderr)
    raise SystemExit(2)
