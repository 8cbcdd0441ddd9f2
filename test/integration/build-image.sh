#!/usr/bin/env bash
# Builds the integration suite's image autonomy-orchestrator:dev FROM scratch
# (no registry is reachable here, so no base image can be pulled): static
# binaries of autonomy-orchestrator and autonomyctl, built with the test-only
# failpoints (-tags failpoints) unless FAILPOINTS=0, and an empty /tmp.
#
#   bash test/integration/build-image.sh            # autonomy-orchestrator:dev
#   IMAGE=foo:bar FAILPOINTS=0 bash test/integration/build-image.sh
#
# It also checks the host tools the suite drives the containers with (nsenter,
# iptables, tc) and installs the missing ones with apt-get when it can.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-autonomy-orchestrator:dev}
FAILPOINTS=${FAILPOINTS:-1}
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

tags=()
if [ "$FAILPOINTS" = 1 ]; then
	tags=(-tags failpoints)
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/autonomy-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

ldflags="-s -w -X github.com/autonomyops/orchestrator/node.Version=$VERSION -X github.com/autonomyops/orchestrator/ctl.Version=$VERSION"
echo "build-image: building static binaries (${tags[*]:-no failpoints}) version $VERSION"
CGO_ENABLED=0 "$GO" build -trimpath "${tags[@]}" -ldflags "$ldflags" -o "$ctx/autonomy-orchestrator" ./node/cmd/autonomy-orchestrator
CGO_ENABLED=0 "$GO" build -trimpath "${tags[@]}" -ldflags "$ldflags" -o "$ctx/autonomyctl" ./ctl/cmd/autonomyctl

# The binaries must be static: a scratch image has no loader and no libc.
for b in autonomy-orchestrator autonomyctl; do
	if command -v file >/dev/null && file "$ctx/$b" | grep -q dynamic; then
		echo "build-image: $b is dynamically linked" >&2
		exit 1
	fi
done

mkdir -p "$ctx/rootfs/tmp" "$ctx/rootfs/data" "$ctx/rootfs/usr/bin"
chmod 1777 "$ctx/rootfs/tmp"
mv "$ctx/autonomy-orchestrator" "$ctx/autonomyctl" "$ctx/rootfs/usr/bin/"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV TMPDIR=/tmp PATH=/usr/bin XDG_CACHE_HOME=/data
VOLUME ["/data"]
EXPOSE 8888 2379 2380 7400 7946 7946/udp
ENTRYPOINT ["/usr/bin/autonomy-orchestrator"]
CMD ["serve", "--data-dir", "/data"]
DOCKERFILE

echo "build-image: docker build -t $IMAGE"
# The classic builder needs no buildx plugin and no base image.
if ! DOCKER_BUILDKIT=0 docker build -q --label "com.autonomyops.failpoints=$FAILPOINTS" -t "$IMAGE" "$ctx" >"$ctx/build.log" 2>&1; then
	cat "$ctx/build.log" >&2
	exit 1
fi
docker image inspect "$IMAGE" --format 'build-image: {{.RepoTags}} {{.Id}} {{.Size}} bytes'

# Host tools the suite uses against the containers' network namespaces.
missing=()
command -v nsenter >/dev/null || missing+=(util-linux)
command -v iptables >/dev/null || missing+=(iptables)
command -v tc >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "build-image: installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
	else
		echo "build-image: warning: missing host tools (${missing[*]}); the iptables/tc faults will fail" >&2
	fi
fi
