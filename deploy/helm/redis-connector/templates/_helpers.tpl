{{/* Helpers of the redis-connector chart. */}}

{{/* The release's resource name: the release name, or release-chart when it lacks the chart's name. */}}
{{- define "redis-connector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels that select the release's pods (never change after install). */}}
{{- define "redis-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "redis-connector.labels" -}}
{{ include "redis-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* registry/repository:tag, or @digest when one is given. */}}
{{- define "redis-connector.image" -}}
{{- $image := .Values.image -}}
{{- $ref := printf "%s/%s" $image.registry $image.repository | trimPrefix "/" -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $ref $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The folder serve reads its pipelines from. */}}
{{- define "redis-connector.pipelinesPath" -}}
{{- if eq .Values.pipelines.from "gitSync" -}}
{{- printf "/git/current/%s" (.Values.pipelines.gitSync.path | trimPrefix "/") | trimSuffix "/" -}}
{{- else -}}
/etc/redis-connector/pipelines
{{- end -}}
{{- end -}}

{{/* The ConfigMap of pipelines the pod mounts. */}}
{{- define "redis-connector.configMapName" -}}
{{- default (printf "%s-pipelines" (include "redis-connector.fullname" .)) .Values.pipelines.configMap.existing -}}
{{- end -}}

{{/* Fails on value combinations that cannot work. */}}
{{- define "redis-connector.validate" -}}
{{- $from := .Values.pipelines.from -}}
{{- if not (has $from (list "gitSync" "configMap")) -}}
{{- fail (printf "pipelines.from is %q: use gitSync or configMap" $from) -}}
{{- end -}}
{{- if eq $from "gitSync" -}}
{{- if not .Values.pipelines.gitSync.repo -}}
{{- fail "pipelines.gitSync.repo is empty: give the repository git-sync clones (https://... or git@host:path)" -}}
{{- end -}}
{{- $type := .Values.pipelines.gitSync.credentials.type -}}
{{- if not (has $type (list "none" "token" "ssh")) -}}
{{- fail (printf "pipelines.gitSync.credentials.type is %q: use none, token or ssh" $type) -}}
{{- end -}}
{{- if and (ne $type "none") (not .Values.pipelines.gitSync.credentials.existingSecret) -}}
{{- fail (printf "pipelines.gitSync.credentials.type is %s: name the Secret in pipelines.gitSync.credentials.existingSecret" $type) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serve.allowTrigger (not .Values.authToken.existingSecret) -}}
{{- fail "serve.allowTrigger needs authToken.existingSecret: the trigger must not be open to every caller" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled -}}
{{- fail "serviceMonitor.enabled and podMonitor.enabled are both true: Prometheus would scrape every series twice; enable one" -}}
{{- end -}}
{{- end -}}

{{/* The env and volume mounts of a git-sync container (init and sidecar). */}}
{{- define "redis-connector.gitSyncContainer" -}}
{{- $git := .Values.pipelines.gitSync -}}
image: {{ printf "%s/%s:%s" $git.image.registry $git.image.repository $git.image.tag | quote }}
imagePullPolicy: {{ $git.image.pullPolicy }}
env:
  - name: GITSYNC_REPO
    value: {{ $git.repo | quote }}
  - name: GITSYNC_REF
    value: {{ $git.ref | quote }}
  - name: GITSYNC_ROOT
    value: /git
  - name: GITSYNC_LINK
    value: current
  - name: GITSYNC_DEPTH
    value: {{ $git.depth | quote }}
  {{- if eq $git.credentials.type "token" }}
  - name: GITSYNC_USERNAME
    valueFrom:
      secretKeyRef:
        name: {{ $git.credentials.existingSecret }}
        key: {{ $git.credentials.usernameKey }}
  - name: GITSYNC_PASSWORD_FILE
    value: /etc/git-secret/token
  {{- else if eq $git.credentials.type "ssh" }}
  - name: GITSYNC_SSH
    value: "true"
  - name: GITSYNC_SSH_KEY_FILE
    value: /etc/git-secret/ssh
  - name: GITSYNC_SSH_KNOWN_HOSTS
    value: "true"
  - name: GITSYNC_SSH_KNOWN_HOSTS_FILE
    value: /etc/git-secret/known_hosts
  {{- end }}
volumeMounts:
  - name: git
    mountPath: /git
  - name: git-tmp
    mountPath: /tmp
  {{- if ne $git.credentials.type "none" }}
  - name: git-credentials
    mountPath: /etc/git-secret
    readOnly: true
  {{- end }}
resources:
  {{- toYaml $git.resources | nindent 2 }}
securityContext:
  {{- /* git-sync runs as its image's user, which has a passwd entry (ssh needs one). */}}
  {{- toYaml (merge (dict "runAsUser" 65533 "runAsGroup" 65533) .Values.securityContext) | nindent 2 }}
{{- end -}}

{{/* Whole seconds of a duration like 30s, 2m or 1h (serve's --shutdown-timeout). */}}
{{- define "redis-connector.seconds" -}}
{{- $text := toString . -}}
{{- if hasSuffix "ms" $text -}}
{{- div (trimSuffix "ms" $text | atoi) 1000 -}}
{{- else if hasSuffix "s" $text -}}
{{- trimSuffix "s" $text | atoi -}}
{{- else if hasSuffix "m" $text -}}
{{- mul (trimSuffix "m" $text | atoi) 60 -}}
{{- else if hasSuffix "h" $text -}}
{{- mul (trimSuffix "h" $text | atoi) 3600 -}}
{{- else -}}
{{- atoi $text -}}
{{- end -}}
{{- end -}}
