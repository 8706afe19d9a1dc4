# FindLIBXSMM.cmake — LIBXSMM 1.17 as Debian's libxsmm-dev ships it: headers in /usr/include and
# static libraries only (/usr/lib/libxsmm*.a), no CMake config and a pkg-config file whose link
# order fails (-lxsmmnoblas before -lxsmm leaves dgemm_ unresolved).  Defines LIBXSMM::LIBXSMM
# linking libxsmm.a, then libxsmmnoblas.a (the BLAS stubs libxsmm.a's gemm fallback refers to),
# in that order; the backend runs LIBXSMM's execute_st in its own OpenMP regions, so the threaded
# helpers of libxsmmext are not needed.  LIBXSMM_VERSION from libxsmm_version.h.
find_path(LIBXSMM_INCLUDE_DIR NAMES libxsmm_dnn_convolution.h)
find_library(LIBXSMM_LIBRARY NAMES libxsmm.a xsmm)
find_library(LIBXSMM_NOBLAS_LIBRARY NAMES libxsmmnoblas.a xsmmnoblas)
if(LIBXSMM_INCLUDE_DIR AND EXISTS ${LIBXSMM_INCLUDE_DIR}/libxsmm_version.h)
  file(STRINGS ${LIBXSMM_INCLUDE_DIR}/libxsmm_version.h v REGEX "define LIBXSMM_CONFIG_VERSION \"")
  string(REGEX REPLACE ".*\"([^\"]*)\".*" "\\1" LIBXSMM_VERSION "${v}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LIBXSMM
  REQUIRED_VARS LIBXSMM_LIBRARY LIBXSMM_NOBLAS_LIBRARY LIBXSMM_INCLUDE_DIR
  VERSION_VAR LIBXSMM_VERSION)
if(LIBXSMM_FOUND AND NOT TARGET LIBXSMM::LIBXSMM)
  add_library(LIBXSMM::LIBXSMM INTERFACE IMPORTED)
  set_target_properties(LIBXSMM::LIBXSMM PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${LIBXSMM_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${LIBXSMM_LIBRARY};${LIBXSMM_NOBLAS_LIBRARY};${CMAKE_DL_LIBS};m")
endif()
