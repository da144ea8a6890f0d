# Multi-stage build: a static binary on an empty base image, run as a
# non-root user. Time zone data is compiled into the binary (time/tzdata),
# so the image needs only CA certificates for TLS to Twilio and SMTP.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/aftercare ./cmd/aftercare

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/aftercare /aftercare
# 65532 is the conventional "nonroot" user; the root filesystem is not
# writable for it, so the console outbox prints only.
USER 65532:65532
ENV HTTP_ADDR=:8080 \
    AFTERCARE_OUTBOX_FILE=
EXPOSE 8080
# The image has no shell: the binary checks itself (GET /readyz on the port
# of HTTP_ADDR).
HEALTHCHECK --interval=10s --timeout=5s --start-period=40s --retries=3 CMD ["/aftercare", "health"]
ENTRYPOINT ["/aftercare"]
CMD ["serve"]
