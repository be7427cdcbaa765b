# fedvigil/broker: Debian's Mosquitto 2.0 with the fleet's configuration
# (deploy/mosquitto/docker.conf: persistence, password file, ACL). For a site
# with a registry, eclipse-mosquitto:2 takes the same files.
#
# Debian's own mosquitto.conf writes a pid file to /run/mosquitto, which
# fails in a container ("Unable to write pid file"); ours writes none, logs
# to stdout, and the broker runs as the mosquitto user from the start.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/*.log \
        /var/log/mosquitto/* \
 && install -d -o mosquitto -g mosquitto -m 0750 /var/lib/mosquitto /mosquitto/secrets
COPY deploy/mosquitto/docker.conf /etc/mosquitto/fedvigil/mosquitto.conf
COPY deploy/mosquitto/fedvigil.acl /etc/mosquitto/fedvigil/fedvigil.acl
COPY docker/broker-secrets /usr/bin/fedvigil-broker-secrets
VOLUME ["/var/lib/mosquitto"]
USER mosquitto
EXPOSE 1883
# A real MQTT round trip: log in as the health user (its password made by
# fedvigil-broker-secrets) and read the broker's uptime from $SYS.
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=5 \
    CMD ["fedvigil-broker-secrets", "--check"]
ENTRYPOINT ["mosquitto", "-c", "/etc/mosquitto/fedvigil/mosquitto.conf"]
