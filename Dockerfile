# fixedgate: a static binary on a distroless, non-root base.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t fixedgate .
#   docker run -v fixedgate-state:/var/lib/fixedgate -v ./fixedgate.yaml:/etc/fixedgate/fixedgate.yaml:ro fixedgate
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/fixedgate ./cmd/fixedgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fixedgate /usr/local/bin/fixedgate
VOLUME ["/var/lib/fixedgate"]
EXPOSE 443 3128 9090
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/fixedgate"]
CMD ["serve", "--config", "/etc/fixedgate/fixedgate.yaml"]
