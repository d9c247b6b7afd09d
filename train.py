"""python train.py --loss multibox+repgt ... (training engine: issue 7, not implemented yet)."""
import sys

if __name__ == "__main__":
    print("train.py: the training engine is not in repssd yet (issue 7); "
          "what exists now: the geometry core (repssd.priors, repssd.matcher)", file=sys.stderr)
    raise SystemExit(2)
