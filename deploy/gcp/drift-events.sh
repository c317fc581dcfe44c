#!/usr/bin/env bash
# Sets up drift events (docs/drift-events.md): a topic and a pull subscription in the
# operator's project, an aggregated Logging sink on the organization (or a folder) routing
# Cloud Run's Admin Activity audit log entries to the topic, and the IAM each side needs.
#
#   deploy/gcp/drift-events.sh OPERATOR_PROJECT (--organization=ORG_ID | --folder=FOLDER_ID | --project=PROJECT)
#
# Then run the controller with
#   --drift-events projects/OPERATOR_PROJECT/subscriptions/binauthz-run-audit-sub
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 OPERATOR_PROJECT (--organization=ORG_ID | --folder=FOLDER_ID | --project=PROJECT)" >&2
  exit 2
fi
ops="$1"
parent="$2"
topic=binauthz-run-audit
subscription=binauthz-run-audit-sub
operator_sa="binauthz-operator@${ops}.iam.gserviceaccount.com"
filter='logName:"cloudaudit.googleapis.com%2Factivity" AND protoPayload.serviceName="run.googleapis.com" AND protoPayload.methodName:("CreateService" OR "UpdateService" OR "ReplaceService" OR "CreateJob" OR "UpdateJob" OR "ReplaceJob" OR "CreateWorkerPool" OR "UpdateWorkerPool" OR "ReplaceWorkerPool")'

gcloud pubsub topics create "$topic" --project="$ops"
gcloud pubsub subscriptions create "$subscription" --project="$ops" \
  --topic="$topic" --ack-deadline=60 --message-retention-duration=1d

children=()
case "$parent" in
  --organization=* | --folder=*) children=(--include-children) ;;
  --project=*) ;;
  *) echo "the second argument must be --organization=, --folder= or --project=" >&2; exit 2 ;;
esac
gcloud logging sinks create "$topic" "pubsub.googleapis.com/projects/${ops}/topics/${topic}" \
  "$parent" "${children[@]}" --log-filter="$filter"

# The sink's writer identity publishes; the operator subscribes.
writer="$(gcloud logging sinks describe "$topic" "$parent" --format='value(writerIdentity)')"
gcloud pubsub topics add-iam-policy-binding "$topic" --project="$ops" \
  --member="$writer" --role=roles/pubsub.publisher
gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project="$ops" \
  --member="serviceAccount:${operator_sa}" --role=roles/pubsub.subscriber

echo "drift events: --drift-events projects/${ops}/subscriptions/${subscription}"
