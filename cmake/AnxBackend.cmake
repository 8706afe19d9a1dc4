# cmake/AnxBackend.cmake — one call per backend folder, and the generated list of backends.
#
#   anx_backend(NAME <name>                 command-line name; may hold '-' (C symbol: anx_backend_<name, '-' as '_'>)
#               SOURCES <files>             portable files, incl. backend_<name>.c (its table and CPU check)
#               [ISA_SOURCES <files> ISA_FLAGS <flags>]   kernel files, the only ones built with the flags
#               [X86_ONLY]                  elsewhere it is compiled in as a stub ("not an x86-64 build")
#               [PACKAGE <find_package args>] [PACKAGE_HINT "apt-get install ..."]   optional dependency
#               [PACKAGE_VARS <vars>]       variables that steer the package's search (BLA_VENDOR)
#               [LINK <libs>] [INCLUDE_DIRS <dirs>])
#
# A backend that cannot be built (option ANX_WITH_<NAME>=OFF, not x86, its package missing or its
# package's CMake config broken) is still compiled in, as a stub whose unavailable() gives the
# reason: `anx verify` then lists it SKIPPED with that reason instead of not knowing it.
#
# What the rest of the build can ask (global properties):
#   ANX_BACKENDS              every backend, in registry order (ref first)
#   ANX_BACKENDS_BUILT        those really built
#   ANX_BACKEND_DIR_<name>    its source folder
#   ANX_BACKEND_WHY_<name>    empty when built, else why not
# and anx_backend_built(<name> <var>) sets <var> ON or OFF.
include_guard(GLOBAL)

set(ANX_GENERATED_DIR ${PROJECT_BINARY_DIR}/generated)

# anx_probe_package(<ok_var> <why_var> <find_package args...>)
# find_package() runs the package's own CMake code, and an error raised there is fatal and cannot
# be caught: oneDNN's dnnl-config.cmake calls find_package(OpenCL REQUIRED), and Debian's
# libdnnl-dev only recommends the OpenCL headers.  So the package is first loaded in a child cmake
# process; only when that succeeds is the real find_package() safe in this one.
function(anx_probe_package ok_var why_var pkg)
  string(MAKE_C_IDENTIFIER "${pkg}" id)
  set(dir ${PROJECT_BINARY_DIR}/probe/${id})
  file(MAKE_DIRECTORY ${dir}/src)
  string(REPLACE ";" " " args "${pkg};${ARGN}")
  file(CONFIGURE OUTPUT ${dir}/src/CMakeLists.txt CONTENT
"cmake_minimum_required(VERSION 3.20)
project(anx_probe_${id} LANGUAGES C)
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
endif()
find_package(${args} QUIET)
if(NOT ${pkg}_FOUND)
  message(FATAL_ERROR \"ANX_PROBE_NOT_FOUND\")
endif()
" @ONLY)
  # The child sees what the user told this configure about packages, and the variables that the
  # caller names in ANX_PROBE_VARS (a find module's own switches, such as BLA_VENDOR): without
  # them the probe could load another library than the real find_package() does.
  set(fwd -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER})
  foreach(v ${ANX_PROBE_VARS})
    if(DEFINED ${v})
      list(APPEND fwd "-D${v}=${${v}}")
    endif()
  endforeach()
  get_cmake_property(cache_vars CACHE_VARIABLES)
  foreach(v ${cache_vars})
    if(v MATCHES "^CMAKE_DISABLE_FIND_PACKAGE_|^CMAKE_PREFIX_PATH$|^CMAKE_FIND_ROOT_PATH$|^[A-Za-z0-9]+_DIR$|^CMAKE_CXX_COMPILER$")
      if(NOT "${${v}}" STREQUAL "" AND NOT "${${v}}" MATCHES "-NOTFOUND$")
        list(APPEND fwd "-D${v}=${${v}}")
      endif()
    endif()
  endforeach()
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${dir}/src -B ${dir}/build ${fwd}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    set(${ok_var} ON PARENT_SCOPE)
    set(${why_var} "" PARENT_SCOPE)
    return()
  endif()
  set(${ok_var} OFF PARENT_SCOPE)
  if("${err}" MATCHES "ANX_PROBE_NOT_FOUND")
    set(${why_var} "${pkg} not found" PARENT_SCOPE)
  elseif("${err}" MATCHES "(Could NOT find [^\n]*)")
    set(${why_var} "${pkg}'s CMake config failed: ${CMAKE_MATCH_1}" PARENT_SCOPE)
  else()
    # The first error message: its indented lines up to "Call Stack" or a blank line, as one line.
    string(REGEX MATCH "CMake Error[^\n]*\n(( [^\n]*\n)+)" _ "${err}")
    string(REGEX REPLACE "[ \n]+" " " msg "${CMAKE_MATCH_1}")
    string(STRIP "${msg}" msg)
    set(${why_var} "${pkg}'s CMake config failed: ${msg}" PARENT_SCOPE)
  endif()
endfunction()

function(anx_backend)
  cmake_parse_arguments(B "X86_ONLY" "NAME;PACKAGE_HINT" "SOURCES;ISA_SOURCES;ISA_FLAGS;PACKAGE;PACKAGE_VARS;LINK;INCLUDE_DIRS" ${ARGN})
  if(NOT B_NAME OR NOT B_SOURCES)
    message(FATAL_ERROR "anx_backend: NAME and SOURCES are required (${CMAKE_CURRENT_LIST_FILE})")
  endif()
  string(MAKE_C_IDENTIFIER "${B_NAME}" sym)
  string(TOUPPER "${sym}" SYM)
  option(ANX_WITH_${SYM} "Build the ${B_NAME} backend when it can be built" ON)

  set(why "")
  if(NOT ANX_WITH_${SYM})
    set(why "not built: configured with ANX_WITH_${SYM}=OFF")
  elseif(B_X86_ONLY AND NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    set(why "not built: not an x86-64 build (${CMAKE_SYSTEM_PROCESSOR})")
  elseif(B_PACKAGE)
    set(ANX_PROBE_VARS ${B_PACKAGE_VARS})
    anx_probe_package(ok pwhy ${B_PACKAGE})
    if(ok)
      find_package(${B_PACKAGE} QUIET)
      list(GET B_PACKAGE 0 pkg)
      if(NOT ${pkg}_FOUND)
        set(ok OFF)
        set(pwhy "${pkg} not found")
      endif()
    endif()
    if(NOT ok)
      set(why "not built: ${pwhy}")
      if(B_PACKAGE_HINT)
        string(APPEND why " (${B_PACKAGE_HINT})")
      endif()
    endif()
  endif()

  set_property(GLOBAL APPEND PROPERTY ANX_BACKENDS ${B_NAME})
  set_property(GLOBAL PROPERTY ANX_BACKEND_DIR_${B_NAME} ${CMAKE_CURRENT_SOURCE_DIR})
  set_property(GLOBAL PROPERTY ANX_BACKEND_SYM_${B_NAME} ${sym})
  set_property(GLOBAL PROPERTY ANX_BACKEND_WHY_${B_NAME} "${why}")
  if(why)
    message(STATUS "anx: backend ${B_NAME}: ${why}")
    return()
  endif()

  set_property(GLOBAL APPEND PROPERTY ANX_BACKENDS_BUILT ${B_NAME})
  list(TRANSFORM B_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ REGEX "^[^/]")
  list(TRANSFORM B_ISA_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ REGEX "^[^/]")
  target_sources(anx PRIVATE ${B_SOURCES} ${B_ISA_SOURCES})
  if(B_ISA_SOURCES)
    # TARGET_DIRECTORY: the properties must reach the anx target, made in the top directory.
    set_source_files_properties(${B_ISA_SOURCES} TARGET_DIRECTORY anx
                                PROPERTIES COMPILE_OPTIONS "${B_ISA_FLAGS}")
  endif()
  if(B_LINK)
    target_link_libraries(anx PUBLIC ${B_LINK})
  endif()
  if(B_INCLUDE_DIRS)
    target_include_directories(anx PRIVATE ${B_INCLUDE_DIRS})
  endif()
  message(STATUS "anx: backend ${B_NAME}: built")
endfunction()

function(anx_backend_built name var)
  get_property(built GLOBAL PROPERTY ANX_BACKENDS_BUILT)
  if(name IN_LIST built)
    set(${var} ON PARENT_SCOPE)
  else()
    set(${var} OFF PARENT_SCOPE)
  endif()
endfunction()

# After every backend folder: the X-macro list that core/backends.c reads, and the stubs.
function(anx_backends_generate)
  get_property(all GLOBAL PROPERTY ANX_BACKENDS)
  set(list_h "/* Generated by cmake/AnxBackend.cmake: the backends of this build, registry order. */\n")
  set(stubs_c "/* Generated by cmake/AnxBackend.cmake: backends compiled in as stubs that say why. */\n#include \"anx/backend.h\"\n")
  set(nstubs 0)
  foreach(name ${all})
    get_property(sym GLOBAL PROPERTY ANX_BACKEND_SYM_${name})
    get_property(why GLOBAL PROPERTY ANX_BACKEND_WHY_${name})
    string(APPEND list_h "ANX_BACKEND(${sym}, \"${name}\")\n")
    if(why)
      math(EXPR nstubs "${nstubs} + 1")
      string(REPLACE "\\" "\\\\" why_c "${why}")
      string(REPLACE "\"" "\\\"" why_c "${why_c}")
      string(APPEND stubs_c "\nstatic const char *anx_${sym}_unavailable(void) { return \"${why_c}\"; }\n"
                            "const anx_backend anx_backend_${sym} = { .name = \"${name}\", .unavailable = anx_${sym}_unavailable };\n")
    endif()
  endforeach()
  file(CONFIGURE OUTPUT ${ANX_GENERATED_DIR}/anx_backend_list.h CONTENT "${list_h}" @ONLY)
  file(CONFIGURE OUTPUT ${ANX_GENERATED_DIR}/anx_backend_stubs.c CONTENT "${stubs_c}" @ONLY)
  target_include_directories(anx PUBLIC ${ANX_GENERATED_DIR})
  target_sources(anx PRIVATE ${ANX_GENERATED_DIR}/anx_backend_stubs.c)
  get_property(built GLOBAL PROPERTY ANX_BACKENDS_BUILT)
  message(STATUS "anx: backends built: ${built} (${nstubs} more compiled in as stubs)")
endfunction()
