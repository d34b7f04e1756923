# The mail sender's programs (mailer-real, mailer-spy, reconciler) on
# Debian 12, built with the same steps as CI (.ci/run): the packages come
# from scripts/install-deps (`build` here, `runtime` in the final image) and
# the build is `make -j2 all`, warnings as errors. tests/integration/
# test_packaging.py checks that these steps stay the ones CI runs.
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps build
COPY . .
RUN make -j2 all

FROM debian:bookworm-slim
WORKDIR /opt/parallel-run
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps runtime && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin parallel-run
COPY --from=build /src/build/bin/ /usr/local/bin/
COPY sql/ sql/
USER parallel-run
EXPOSE 8080 8081
CMD ["mailer-real"]
