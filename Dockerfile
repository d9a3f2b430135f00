# celeriac worker image.
#
#   docker build -t celeriac .
#   docker run --rm --network host celeriac -b amqp://guest:guest@127.0.0.1:5672//
#
# The entry point is `celeriac worker`, and the default arguments load the
# demo task module. Pass other worker flags after the image name.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make all

FROM debian:bookworm-slim
COPY --from=build /src/scripts/deps.sh /tmp/deps.sh
RUN /tmp/deps.sh --runtime \
    && rm -rf /var/lib/apt/lists/* /tmp/deps.sh \
    && useradd --system --no-create-home --shell /usr/sbin/nologin celeriac
COPY --from=build /src/build/celeriac /usr/local/bin/celeriac
COPY --from=build /src/build/libceleriac.so /usr/local/lib/libceleriac.so
COPY --from=build /src/build/demo_tasks.so /usr/local/lib/celeriac/demo_tasks.so
RUN ldconfig
USER celeriac
ENTRYPOINT ["/usr/local/bin/celeriac", "worker"]
CMD ["-A", "/usr/local/lib/celeriac/demo_tasks.so", "-l", "info"]
