# moongate: a multi-stage build on Debian 12. The runtime image holds the
# binary, the built-in plugins, its shared libraries and the CA store, and runs as a
# non-root user.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make libuv1-dev libjansson-dev libluajit2-5.1-dev libssl-dev libnghttp2-dev luajit2 node-llhttp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile VERSION ./
COPY core core
COPY lua lua
COPY plugins plugins
COPY tools tools
RUN make -j"$(nproc)" && strip build/moongate

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libjansson4 libluajit2-5.1-2 libnghttp2-14 libssl3 ca-certificates zlib1g libbrotli1 libcrypt1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /etc/moongate --shell /usr/sbin/nologin moongate
COPY --from=build /src/build/moongate /usr/local/bin/moongate
COPY plugins /etc/moongate/plugins
WORKDIR /etc/moongate
USER moongate
EXPOSE 8080
ENTRYPOINT ["moongate"]
