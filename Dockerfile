# fixedgate: a static binary on a distroless, non-root base (CA certificates included, no shell).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t fixedgate .
#   docker run -d --name fixedgate -p 443:443 -p 3128:3128 \
#     -v fixedgate-state:/var/lib/fixedgate \
#     -v ./fixedgate.yaml:/etc/fixedgate/fixedgate.yaml:ro fixedgate
# The state volume holds the ip-ranges contract (ipranges.state) and, under certs/, certificates
# (tls.acme.storage, or tls.self_signed.dir); mount certificate files (tls.files) read-only
# under /etc/fixedgate. Ports below 1024 need no capability: Docker lets containers bind them
# (net.ipv4.ip_unprivileged_port_start=0). The health check runs inside the container, so the
# default admin.listen 127.0.0.1:9090 works; publish 9090 only with admin on a management network.
# The build command below is run as-is by cmd/fixedgate/docker_test.go: keep it one RUN line.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/fixedgate ./cmd/fixedgate
# The volume directories, owned by distroless's nonroot user (65532) so that a fresh named
# volume is writable by the proxy.
RUN mkdir -p /out/state/certs /out/etc

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fixedgate /usr/local/bin/fixedgate
COPY --from=build --chown=65532:65532 /out/state /var/lib/fixedgate
COPY --from=build /out/etc /etc/fixedgate
VOLUME ["/var/lib/fixedgate", "/var/lib/fixedgate/certs"]
EXPOSE 443 3128 9090
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/fixedgate", "healthcheck", "--url", "http://127.0.0.1:9090/readyz", "--timeout", "5s"]
ENTRYPOINT ["/usr/local/bin/fixedgate"]
CMD ["serve", "--config", "/etc/fixedgate/fixedgate.yaml"]
