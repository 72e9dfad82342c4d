#!/bin/sh
# Knows only the /opt/ml contract, as SageMaker's own containers and the SDK v3's sm_train.sh do.
set -e
cp /opt/ml/input/config/hyperparameters.json /opt/ml/model/
cp /opt/ml/input/data/train/scones.csv /opt/ml/model/
echo "$TRAINING_JOB_NAME $1" > /opt/ml/model/who
sleep 1  # the other job writes its own /opt/ml/model/who meanwhile
test "$(cat /opt/ml/model/who)" = "$TRAINING_JOB_NAME $1"
echo "done in $(pwd)"
