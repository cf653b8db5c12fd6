# keybroker's container image, for those who build with Docker or BuildKit:
#
#   docker build --build-arg VERSION=$(git describe --tags --match 'v*' --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg COMMIT_DATE=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ) -t keybroker .
#
# `make image` builds the same contents without a Docker engine
# (internal/build/ociimage): a static binary, Debian's CA certificates, the
# non-root user 65532, no shell. A test keeps the two in step.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v2.0.0-dev
ARG COMMIT=
ARG COMMIT_DATE=
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -buildid= -X github.com/keybroker/keybroker/internal/runtime/buildinfo.version=${VERSION} -X github.com/keybroker/keybroker/internal/runtime/buildinfo.commit=${COMMIT} -X github.com/keybroker/keybroker/internal/runtime/buildinfo.date=${COMMIT_DATE}" \
      -o /out/usr/local/bin/keybroker ./cmd/keybroker \
 && mkdir -p /out/etc/ssl/certs /out/home/nonroot /out/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group \
 && chown 65532:65532 /out/home/nonroot && chmod 0700 /out/home/nonroot && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=v2.0.0-dev
ARG COMMIT=
ARG COMMIT_DATE=
COPY --from=build /out/ /
USER 65532:65532
WORKDIR /home/nonroot
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt HOME=/home/nonroot
EXPOSE 8080/tcp 9464/tcp
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="keybroker" \
      org.opencontainers.image.description="Vault-backed secrets broker for bring-your-own-key API keys" \
      org.opencontainers.image.source="https://github.com/keybroker/keybroker" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${COMMIT_DATE}"
ENTRYPOINT ["/usr/local/bin/keybroker"]
CMD ["serve"]
