{{/* The objects' base name: the release name when it already names the chart (the
default install, `helm install binauthz-operator ...`), else RELEASE-binauthz-operator. */}}
{{- define "binauthz.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: the same as the kustomize base's, so both select the same pods. */}}
{{- define "binauthz.selectorLabels" -}}
app.kubernetes.io/name: binauthz-operator
app.kubernetes.io/component: controller
{{- end -}}

{{/* Labels on every object. */}}
{{- define "binauthz.labels" -}}
app.kubernetes.io/name: binauthz-operator
app.kubernetes.io/part-of: binauthz-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "binauthz.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the shutdown grace plus 5s for process exit. */}}
{{- define "binauthz.terminationGrace" -}}
{{- $grace := .Values.shutdownGrace | toString -}}
{{- if not (regexMatch "^[0-9]+s$" $grace) -}}
{{- fail (printf "shutdownGrace: %q is not a whole number of seconds such as 25s" $grace) -}}
{{- end -}}
{{- add (trimSuffix "s" $grace | atoi) 5 -}}
{{- end -}}
