# Install-time half of the systemd units (included by cmake_install.cmake):
# fills @FV_BINDIR@, @FV_DOCDIR@ and @FV_HARDENING@ for the prefix being
# installed to (cmake --install --prefix, or CPack's /usr), so the units
# always name the binaries where they actually land. Set before this file:
# FV_UNITS_SRC (the source's systemd/), FV_UNITS_OUT (a scratch directory).
if(NOT DEFINED FV_SYSTEMD_UNITDIR OR FV_SYSTEMD_UNITDIR STREQUAL "")
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(FV_SYSTEMD_UNITDIR /lib/systemd/system) # Debian 12: units stay in /lib
  else()
    set(FV_SYSTEMD_UNITDIR ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
  endif()
endif()
set(FV_BINDIR ${CMAKE_INSTALL_PREFIX}/bin)
set(FV_DOCDIR ${CMAKE_INSTALL_PREFIX}/share/doc/fedvigil)
file(READ ${FV_UNITS_SRC}/hardening.conf FV_HARDENING)
string(STRIP "${FV_HARDENING}" FV_HARDENING)
foreach(unit fedvigil-coordinator.service fedvigil-agent.service fedvigil-agent@.service)
  configure_file(${FV_UNITS_SRC}/${unit}.in ${FV_UNITS_OUT}/${unit} @ONLY)
  file(INSTALL DESTINATION ${FV_SYSTEMD_UNITDIR} TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE
       GROUP_READ WORLD_READ FILES ${FV_UNITS_OUT}/${unit})
endforeach()
