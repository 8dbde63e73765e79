#!/usr/bin/env bash
# A stacking workflow end to end, from a terminal: add configs, train them, build an ensemble, predict.
# Uses the project's .venv (run scripts/start.sh or scripts/test.sh once first) and whatever database
# the environment says (MONGO_URI, or the embedded server). GAMES sets the demo data size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cli() { .venv/bin/python -m cli "$@"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cli demo --games "${GAMES:-24600}"                         # data/nba_games.csv (or $DATA_DIR) + demo configs
csv="$(cli demo --json --games "${GAMES:-24600}" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["csv"])')"

# 1. two configs of our own, as files (JSON and YAML both work)
cat > "$work/wf_extra_trees.json" <<JSON
{"name": "wf_extra_trees", "task": "classification", "model_type": "extra_trees",
 "hyperparameters": {"n_estimators": 50, "max_depth": 8}, "target": "home_win", "training_csv": "$csv",
 "features": ["home_win_pct_last10", "away_win_pct_last10", "home_rest_days", "away_rest_days",
              "home_off_rating", "away_off_rating", "home_def_rating", "away_def_rating"],
 "split": "time", "time_column": "game_date"}
JSON
cat > "$work/wf_logreg.yaml" <<YAML
name: wf_logreg
task: classification
model_type: logistic_regression
hyperparameters: {C: 0.5}
target: home_win
training_csv: $csv
features: [home_win_pct_last10, away_win_pct_last10, home_rest_days, away_rest_days,
           home_off_rating, away_off_rating, home_def_rating, away_def_rating]
split: time                 # games are validated in time order, like the demo's configs
time_column: game_date
YAML
cli configs add --replace "$work/wf_extra_trees.json" "$work/wf_logreg.yaml"

# 2. train them (and a demo config) two at a time; artifacts land in ARTIFACT_DIR with checksums in MongoDB
cli train wf_extra_trees wf_logreg home_win_nb --parallel 2

# 3. an ensemble over the trained models: base models load from artifacts, nothing is retrained
cli ensemble delete wf_stack --yes >/dev/null 2>&1 || true
cli ensemble create wf_stack --base wf_extra_trees --base wf_logreg --base home_win_nb --meta logistic_regression

# 4. predictions for new rows (here: the first 100 games)
head -n 101 "$csv" > "$work/new_games.csv"
cli ensemble predict wf_stack --csv "$work/new_games.csv" --out "$work/predictions.csv"
head -n 5 "$work/predictions.csv"
