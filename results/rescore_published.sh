#!/usr/bin/env bash
# Re-score published results with the current eval settings of their configs, without their
# models (whose run directories need not exist any more): the saved per-object errors of
# results/<name>/scores.json are fused, track-smoothed, maximised and filtered again, and S_a is
# recomputed from the cached cubes when the config asks for another one (eval.py --rescore).
# Run from the repository root:   bash results/rescore_published.sh name [name ...]
# (a name may be a sub-folder, e.g. ped2_cpu_stochastic/seed0, scored with its parent's config).
# Each result is rebuilt in runs/published/<name>/ and published back to results/<name>/; its
# stand-in, motion checks and object grids need the model, so they are kept as they were.
set -euo pipefail
export HF2VAD_DATASETS="${HF2VAD_DATASETS:-../shared/data}"  # where Ped2 is (data.root)

for name in "$@"; do
    src=results/$name
    run=runs/published/$name
    [[ -f $src/scores.json ]] || { echo "rescore_published: no $src/scores.json" >&2; exit 1; }
    rm -rf "$run" && mkdir -p "$run/eval"
    for file in scores.json metrics.json config.yaml standin.json objects_highest.png \
                objects_lowest.png motion_check_testing.json motion_epochs_testing.json; do
        [[ -f $src/$file ]] && cp "$src/$file" "$run/eval/"
    done
    [[ -f $src/pipeline_times.json ]] && cp "$src/pipeline_times.json" "$run/"
    extra=()
    [[ $name =~ /seed([0-9]+)$ ]] && extra=("seed=${BASH_REMATCH[1]}")  # Appendix B's seeds
    python eval.py --cfg "cfgs/${name%%/*}.yaml" --rescore "run_dir=$run" "${extra[@]}"
    notes=()
    [[ -f $src/notes.md ]] && notes=(--notes "$src/notes.md")
    python -m tools.report --run "$run" --out "$src" "${notes[@]}"
done
python -m tools.report --gather results
python -m tools.report --readme README.md
