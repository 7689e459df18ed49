# Install rules (included at the end of the top-level CMakeLists.txt):
#   <prefix>/include/fkb/*.h, *.hpp          C and C++ headers
#   <prefix>/include/fkb/fortran/*.mod       fkb.mod, fkb_physics.mod, fkb_strings.mod, fkb_status.mod (internal)
#   <prefix>/lib/libfkb.so, libfkb_fortran.so
#   <prefix>/lib/libfkb_cuda.so              the CUDA backend plugin (CUDA builds): libfkb dlopen()s it from its own
#                                            directory (or FKB_BACKEND_PATH) when a CUDA device is asked for. Not a
#                                            link dependency: fkbTargets.cmake and fkb.pc do not name it, and libfkb
#                                            links no CUDA library, so one install serves GPU and CPU-only nodes.
#                                            RUNPATH: $ORIGIN (libfkb) and the CUDA toolkit's library directory.
#   <prefix>/lib/cmake/fkb/                  fkbConfig.cmake, fkbConfigVersion.cmake, fkbTargets*.cmake
#   <prefix>/lib/pkgconfig/fkb.pc            for plain Makefiles / command lines
#   <prefix>/bin/fkb                         the command-line tool
# The prefix given to `cmake --install build --prefix P` is the one written into fkb.pc.
include(CMakePackageConfigHelpers)

set(FKB_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/fkb)
set(FKB_INSTALL_FMODDIR ${CMAKE_INSTALL_INCLUDEDIR}/fkb/fortran)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/fkb DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")

set(_fkb_export_targets fkb)
if(TARGET fkb_fortran)
  list(APPEND _fkb_export_targets fkb_fortran)
  # libfkb_fortran finds libfkb next to itself, whatever the program's own rpath says.
  set_target_properties(fkb_fortran PROPERTIES INSTALL_RPATH "$ORIGIN")
  install(DIRECTORY ${FKB_FORTRAN_MODULE_DIR}/ DESTINATION ${FKB_INSTALL_FMODDIR} FILES_MATCHING PATTERN "*.mod")
endif()
install(TARGETS ${_fkb_export_targets} EXPORT fkbTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET fkb_cuda)
  install(TARGETS fkb_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
if(TARGET fkb_cli)
  set_target_properties(fkb_cli PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  install(TARGETS fkb_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

install(EXPORT fkbTargets NAMESPACE fkb:: DESTINATION ${FKB_INSTALL_CMAKEDIR} FILE fkbTargets.cmake)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/fkbConfig.cmake.in ${PROJECT_BINARY_DIR}/cmake/fkbConfig.cmake
  INSTALL_DESTINATION ${FKB_INSTALL_CMAKEDIR})
# 0.x: minor versions may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/fkbConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/fkbConfig.cmake ${PROJECT_BINARY_DIR}/cmake/fkbConfigVersion.cmake
  DESTINATION ${FKB_INSTALL_CMAKEDIR})

# fkb.pc: configured now with a placeholder prefix, written at install time with the real one.
if(TARGET fkb_fortran)
  set(FKB_PC_FORTRAN_CFLAGS " -I\${fmoddir}")
  set(FKB_PC_FORTRAN_LIBS " -lfkb_fortran")
else()
  set(FKB_PC_FORTRAN_CFLAGS "")
  set(FKB_PC_FORTRAN_LIBS "")
endif()
set(FKB_PC_PREFIX "@FKB_PC_PREFIX@")
configure_file(${CMAKE_CURRENT_LIST_DIR}/fkb.pc.in ${PROJECT_BINARY_DIR}/cmake/fkb.pc.in @ONLY)
install(CODE "
  set(FKB_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/cmake/fkb.pc.in\" \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/fkb.pc\" @ONLY)
  message(STATUS \"Installing: \$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/fkb.pc\")
")
unset(_fkb_export_targets)
