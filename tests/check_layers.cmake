# The layering rule of DESIGN.md, checked on the sources and on the binaries:
#     common (errors, diagnostics) <- compiler <- tools
#     common <- generated-code headers (common/prelude) <- runtime <- tools
# Fails if a runtime/ or common/ source includes a compiler header (as
# "compiler/x.h" or by the bare name of a header in compiler/), if common/
# includes the runtime, if a generated-code header includes anything of ddpmc
# outside common/prelude, or (given BINARIES: the runtime library) if a binary
# carries compiler code.
# Usage: cmake -DSOURCE_DIR=<repo> [-DBINARIES="a;b"] -P check_layers.cmake
cmake_minimum_required(VERSION 3.25)
if(NOT SOURCE_DIR)
  message(FATAL_ERROR "pass -DSOURCE_DIR=<the repository>")
endif()

file(GLOB compiler_headers RELATIVE ${SOURCE_DIR}/compiler ${SOURCE_DIR}/compiler/*.h ${SOURCE_DIR}/compiler/passes/*.h)
file(GLOB_RECURSE prelude_headers RELATIVE ${SOURCE_DIR}/common/prelude ${SOURCE_DIR}/common/prelude/*.h)
set(violations "")

# Appends to `violations` every quoted include of FILE that matches one of NAMES
# (bare header names) or starts with one of PREFIXES.
function(check_file file names prefixes)
  file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" inc "${line}")
    set(bad FALSE)
    foreach(p IN LISTS prefixes)
      string(FIND "${inc}" "${p}" at)
      if(at EQUAL 0)
        set(bad TRUE)
      endif()
    endforeach()
    if(inc IN_LIST names)
      set(bad TRUE)
    endif()
    if(bad)
      file(RELATIVE_PATH rel ${SOURCE_DIR} ${file})
      set(violations "${violations}\n  ${rel}: #include \"${inc}\"" PARENT_SCOPE)
    endif()
  endforeach()
endfunction()

# Compiler headers that the base library also has (diag.h lives in common/) are
# allowed by their bare name.
file(GLOB common_headers RELATIVE ${SOURCE_DIR}/common ${SOURCE_DIR}/common/*.h)
set(forbidden_names ${compiler_headers})
foreach(h IN LISTS common_headers prelude_headers)
  list(REMOVE_ITEM forbidden_names ${h})
endforeach()

file(GLOB runtime_files ${SOURCE_DIR}/runtime/*.h ${SOURCE_DIR}/runtime/*.cpp)
foreach(f IN LISTS runtime_files)
  check_file(${f} "${forbidden_names}" "compiler/;passes/")
endforeach()
file(GLOB common_files ${SOURCE_DIR}/common/*.h ${SOURCE_DIR}/common/*.cpp)
foreach(f IN LISTS common_files)
  check_file(${f} "${forbidden_names}" "compiler/;runtime/;passes/;tools/")
endforeach()
# Generated code sees only the prelude folder: each prelude header includes only
# its siblings (and system headers, written with <>).
file(GLOB prelude_files ${SOURCE_DIR}/common/prelude/*.h)
foreach(f IN LISTS prelude_files)
  file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" inc "${line}")
    if(NOT inc IN_LIST prelude_headers)
      file(RELATIVE_PATH rel ${SOURCE_DIR} ${f})
      set(violations "${violations}\n  ${rel}: #include \"${inc}\" (not a generated-code header)")
    endif()
  endforeach()
endforeach()

# Binaries that must not contain the compiler: no symbol of the front end, the
# passes or the module builder.
foreach(bin IN LISTS BINARIES)
  execute_process(COMMAND nm -C --defined-only ${bin} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${bin}")
  endif()
  foreach(sym "ddpmc::build_module" "ddpmc::compile_spec_file" "ddpmc::emit_module" "ddpmc::Parser")
    string(FIND "${syms}" "${sym}" at)
    if(NOT at EQUAL -1)
      set(violations "${violations}\n  ${bin} contains compiler code (${sym})")
    endif()
  endforeach()
endforeach()

if(violations)
  message(FATAL_ERROR "layering violations (the runtime and common/ must not depend on the compiler):${violations}")
endif()
message(STATUS "layering ok")
