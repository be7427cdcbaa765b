# What `cmake --install` puts where, and the Debian package built from it
# (cpack -G DEB, see scripts/package and docs/install.md).
#
#   <prefix>/bin/fedvigil-*                     the daemons and tools
#   /lib/systemd/system/*.service               units (<prefix>/lib/systemd/system
#                                               when the prefix is not /usr)
#   /etc/fedvigil/agent.ini, coordinator.ini    configuration (conffiles)
#   <prefix>/share/doc/fedvigil/                README, docs/, examples/, schemas
#   <prefix>/share/man/man8/                    fedvigil-agent(8), fedvigil-coordinator(8)
include(GNUInstallDirs)
# Installing (and cpack) never builds: build first (scripts/package does).
# A test that packages the tree it is testing must not rebuild it.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS fedvigil-agent fedvigil-coordinator fedvigil-sim fedvigil-replay
        fedvigil-score fedvigil-keygen fedvigil-health fedvigil-eval
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Units: generated at install time for the prefix actually used.
install(CODE "set(FV_UNITS_SRC \"${CMAKE_SOURCE_DIR}/systemd\")
set(FV_UNITS_OUT \"${CMAKE_BINARY_DIR}/systemd\")
set(FV_SYSTEMD_UNITDIR \"${FV_SYSTEMD_UNITDIR}\")")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/FvUnits.cmake)

# Configuration: always /etc/fedvigil, where the units look. Mode 0640
# (they may hold broker passwords); postinst gives them group fedvigil.
install(FILES ${CMAKE_SOURCE_DIR}/deploy/agent.ini ${CMAKE_SOURCE_DIR}/deploy/coordinator.ini
        DESTINATION /etc/fedvigil PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)

set(FV_DOCDIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/fedvigil)
file(GLOB FV_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${FV_DOCS}
        ${CMAKE_SOURCE_DIR}/packaging/debian/copyright DESTINATION ${FV_DOCDIR})
file(GLOB FV_SCHEMAS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/schema/*.json)
install(FILES ${FV_SCHEMAS} DESTINATION ${FV_DOCDIR}/schema)
file(GLOB FV_EXAMPLES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/deploy/*.ini)
install(FILES ${FV_EXAMPLES} DESTINATION ${FV_DOCDIR}/examples)

# Man pages: hand-written roff (docs/man/*.8.in) with the configuration
# keys filled in from the daemon's own key table, gzipped as Debian wants.
find_program(FV_GZIP gzip REQUIRED)
set(FV_MAN_GZ)
foreach(prog fedvigil-agent fedvigil-coordinator)
  set(out ${CMAKE_BINARY_DIR}/man/${prog}.8.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND ${CMAKE_COMMAND} -DFV_PROG=$<TARGET_FILE:${prog}>
            "-DFV_EMULATOR=${CMAKE_CROSSCOMPILING_EMULATOR}" -DFV_GZIP=${FV_GZIP}
            -DFV_IN=${CMAKE_SOURCE_DIR}/docs/man/${prog}.8.in -DFV_OUT=${out}
            -DFV_VERSION=${PROJECT_VERSION} -P ${CMAKE_SOURCE_DIR}/cmake/FvMan.cmake
    DEPENDS ${prog} ${CMAKE_SOURCE_DIR}/docs/man/${prog}.8.in ${CMAKE_SOURCE_DIR}/cmake/FvMan.cmake
    VERBATIM)
  list(APPEND FV_MAN_GZ ${out})
endforeach()
add_custom_target(fedvigil-man ALL DEPENDS ${FV_MAN_GZ})
install(FILES ${FV_MAN_GZ} DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# ---- Debian package: fedvigil_<version>_<arch>.deb ----
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(FV_DEB_ARCH arm64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|amd64)$")
  set(FV_DEB_ARCH amd64)
else()
  set(FV_DEB_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fedvigil)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "fedvigil maintainers <fedvigil@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "federated anomaly detection for industrial machines over MQTT")
# The extended description; CPack puts the summary above it.
set(CPACK_PACKAGE_DESCRIPTION "fedvigil-agent runs beside each machine, scores windows of its sensor \
readings with a small autoencoder and publishes alerts on MQTT; \
fedvigil-coordinator runs federated training rounds over the same broker. \
Raw sensor data never leaves an agent. Includes systemd units, the plant \
simulator and the replay and scoring tools.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${FV_DEB_ARCH})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/fedvigil/fedvigil")
# Shared-library dependencies from dpkg-shlibdeps (the target's libraries
# must be installed: multiarch for a cross build), plus what the
# maintainer scripts use.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "mosquitto-clients")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mosquitto")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/debian/postinst ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
  ${CMAKE_SOURCE_DIR}/packaging/debian/postrm ${CMAKE_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
