FROM alpine AS base
FROM base
COPY --from=base --chown=1000:1000 --chmod=0644 --link a.txt b.txt /dest/
COPY --parents --exclude=*.tmp --exclude=.git ./src/ /app/
COPY ["file with space", "/dest/other file"]
COPY --link=false x /y
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/f.tar.gz /opt/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.12.0 /src
ADD --unpack=false --chown=app archive.tar.gz /opt/
ADD --exclude=docs ["a", "b", "/c/"]
