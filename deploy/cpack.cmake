# The .deb: `cpack -G DEB` in the build directory makes dionbd_VERSION_ARCH.deb
# from what `cmake --install` installs (prefix /usr), with Depends from
# dpkg-shlibdeps and maintainer scripts from deploy/debian/.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME dionbd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "dionbd maintainers <dionbd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "NBD network block storage server on io_uring and O_DIRECT")
set(CPACK_PACKAGE_DESCRIPTION
"dionbd exports files and block devices over the NBD protocol to nbd-client,
QEMU and libnbd clients, with direct I/O through io_uring, holes answered
without device I/O, STARTTLS (X.509 and PSK) and systemd integration. The
package also holds nbdkit-dio-plugin, the same core behind nbdkit.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared libraries (liburing2, libevent-core, libssl3, libinih1, libsystemd0,
# libc6) from dpkg-shlibdeps; the rest by hand: adduser for the postinst,
# nbdkit for the plugin (nbdkit plugins do not link against nbdkit).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, nbdkit")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libnbd-bin, qemu-utils")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
	${CMAKE_CURRENT_LIST_DIR}/debian/postinst
	${CMAKE_CURRENT_LIST_DIR}/debian/prerm
	${CMAKE_CURRENT_LIST_DIR}/debian/postrm
	${CMAKE_CURRENT_LIST_DIR}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
