FROM alpine AS BadStageName
RUN true
