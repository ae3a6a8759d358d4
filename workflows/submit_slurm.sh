#!/usr/bin/env bash
# Submit the whole qsmflow analysis to SLURM: the participant array (one task per line of
# participants.tsv), then the group level, which starts only when every task succeeded.
#
#   export BIDS_DIR=/data/bids OUT_DIR=/data/derivatives/qsmflow WORK_DIR=/scratch/$USER/qsmflow
#   export QSMFLOW_CMD="apptainer run --cleanenv -B /data -B /scratch /images/qsmflow.sif"
#   bash workflows/submit_slurm.sh [sbatch options for both jobs, e.g. -p short -A myproj]
#
# ARRAY_LIMIT=N runs at most N tasks at once (--array=1-M%N). GROUP_DEPENDENCY=afterany
# runs the group level even when some participants failed (default: afterok; the group
# job is then cancelled if a task fails, rather than left pending forever).
# Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${BIDS_DIR:?set BIDS_DIR to the BIDS dataset}"
: "${OUT_DIR:?set OUT_DIR to the derivatives folder}"
export BIDS_DIR OUT_DIR

n=$(awk 'NR > 1 && NF > 0' "$BIDS_DIR/participants.tsv" | wc -l)
if [ "$n" -lt 1 ]; then
  echo "submit_slurm: no participants in $BIDS_DIR/participants.tsv" >&2
  exit 2
fi
range=1-$n${ARRAY_LIMIT:+%$ARRAY_LIMIT}

array_id=$(sbatch --parsable --array="$range" "$@" "$here/slurm_array.sbatch")
array_id=${array_id%%;*}  # --parsable prints "id[;cluster]"
group_id=$(sbatch --parsable --dependency="${GROUP_DEPENDENCY:-afterok}:$array_id" \
  --kill-on-invalid-dep=yes "$@" \
  "$here/slurm_group.sbatch")
group_id=${group_id%%;*}
echo "participant array: job $array_id ($n tasks); group level: job $group_id"
