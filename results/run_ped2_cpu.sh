#!/usr/bin/env bash
# Every Ped2 CPU-schedule experiment of results/README.md, in dependency order; each one is
# published to results/<name>/ as soon as it finishes. Run from the repository root:
#   bash results/run_ped2_cpu.sh [name ...]     (default: all, in the order below)
# Finished stages and cached statistics are skipped, so an interrupted run can be restarted.
set -euo pipefail
export HF2VAD_DATASETS="${HF2VAD_DATASETS:-../shared/data}"  # where Ped2 is (data.root)

ALL=(ped2_cpu ped2_cpu_memae ped2_cpu_cvae ped2_cpu_fast ped2_cpu_vae ped2_cpu_memae2 ped2_cpu_memae_plain
     ped2_cpu_stochastic ped2_cpu_hybrid_memae2 ped2_cpu_hybrid_memae_plain
     ped2_cpu_recon4 ped2_cpu_recon1 ped2_cpu_recon2 ped2_cpu_recon3 ped2_cpu_flow_units
     ped2_cpu_cvae_long ped2_cpu_cvae_noskip1 ped2_cpu_fast_border ped2_cpu_border
     ped2_cpu_memae_border)

setting() {  # setting NAME KEY: the value of a dotted config key of cfgs/NAME.yaml
    python -c "from utils.config import load_config; print(load_config('cfgs/$1.yaml').$2)"
}

run_one() {
    local name=$1
    if [[ $name == ped2_cpu_stochastic ]]; then  # Appendix B: five sampled-latent evaluations
        for seed in 0 1 2 3 4; do
            python eval.py --cfg cfgs/$name.yaml seed=$seed run_dir=runs/$name/seed$seed
            python -m tools.report --run runs/$name/seed$seed --out results/$name/seed$seed
        done
        return
    fi
    if [[ $name == ped2_cpu_memae_border ]]; then  # it scores the stage 1 of ped2_cpu_border
        python -m pre_process.run --cfg cfgs/ped2_cpu_border.yaml
        python ml_memae_sc_train.py --cfg cfgs/ped2_cpu_border.yaml --resume
    fi
    python run_pipeline.py --cfg cfgs/$name.yaml
    python -m tools.pasted_standin --run runs/$name  # appearance anomalies at walking speed
    if [[ $(setting "$name" model.type) =~ ^(hybrid|cvae)$ ]]; then  # does the CVAE use flows?
        python -m tools.motion_check --run runs/$name
        if [[ $(setting "$name" train.keep_epochs) == True ]]; then
            python -m tools.motion_check --run runs/$name --all-epochs
        fi
    fi
    local notes=()
    [[ -f results/$name/notes.md ]] && notes=(--notes results/$name/notes.md)
    python -m tools.report --run runs/$name --out results/$name "${notes[@]}"
}

for name in "${@:-${ALL[@]}}"; do
    run_one "$name"
done
python -m tools.report --gather results
