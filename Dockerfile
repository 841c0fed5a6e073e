# Build: docker build -t flashsale .   (compose.yml builds it too)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum* ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /flashsale ./cmd/flashsale

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /flashsale /usr/local/bin/flashsale
# The ledger's archive (compose.yml mounts a volume here; a new volume takes this owner).
RUN mkdir -p /var/lib/flashsale/archive && chown nobody /var/lib/flashsale/archive
ENV FLASHSALE_ARCHIVE=file:///var/lib/flashsale/archive
USER nobody
EXPOSE 8080 50051
# No ENTRYPOINT, so that a command such as `sh -c "flashsale migrate && exec flashsale serve"`
# (see compose.yml) can replace the default.
CMD ["flashsale", "serve"]
