FROM alpine
HEALTHCHECK NONE
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 \
  CMD curl -f http://localhost/ || exit 1
HEALTHCHECK --interval=0s CMD ["/bin/check", "--quick"]
HEALTHCHECK cmd true
