# The Fortran test suite, defined once and built twice: in the main build with its Fortran compiler
# (tests/fortran/CMakeLists.txt) and, when LLVM flang is installed, by the standalone project in
# tests/fortran/flang/ that compiles module fkb with flang against the same libfkb.
#
# fkb_fortran_test_suite(PREFIX <test-name prefix> LIBRARY <target providing modules fkb, fkb_physics>
#   DATA_DIR <dir of <fixture>.txt files from fkb_fixture_export> WORK_DIR <scratch dir>
#   [SETUP_FIXTURE <CTest fixture that writes DATA_DIR>]
#   PARITY <fixtures...> SMALL <single-input fixture> PHYSICS <fixture>
#   [ENSEMBLE <ensemble export name>] [CUSTOM <fixtures holding the ScaledTanh custom layer...>]
#   [MULTI_IO <a Keras model file with several inputs/outputs>])
# With ENSEMBLE and MULTI_IO: <prefix>options_{quiet,verbose} (load options reach the library; multi-input models
# are refused at load/init). With ENSEMBLE and OpenMP for Fortran: <prefix>threads (one shared model, ensemble
# and fkb_physics called from an !$omp parallel do, bitwise vs serial and vs Keras), labels "fortran;threads".
set(FKB_FORTRAN_SUITE_DIR ${CMAKE_CURRENT_LIST_DIR})

function(fkb_fortran_test_suite)
  cmake_parse_arguments(S "" "PREFIX;LIBRARY;DATA_DIR;WORK_DIR;SETUP_FIXTURE;SMALL;PHYSICS;ENSEMBLE;MULTI_IO"
    "PARITY;CUSTOM" ${ARGN})
  set(d ${FKB_FORTRAN_SUITE_DIR})
  set(p ${S_PREFIX})

  add_library(${p}test_util STATIC ${d}/fkb_test_util.f90)
  set_target_properties(${p}test_util PROPERTIES Fortran_MODULE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/${p}mod)
  target_include_directories(${p}test_util PUBLIC ${CMAKE_CURRENT_BINARY_DIR}/${p}mod)
  target_link_libraries(${p}test_util PUBLIC ${S_LIBRARY})
  set(extra_tests)
  if(S_ENSEMBLE)
    list(APPEND extra_tests test_ensemble)
  endif()
  if(S_CUSTOM)
    list(APPEND extra_tests test_custom_layer)
  endif()
  if(S_ENSEMBLE AND S_MULTI_IO)
    list(APPEND extra_tests test_options)
  endif()
  set(threads_test)
  if(S_ENSEMBLE)
    find_package(OpenMP COMPONENTS Fortran)
    if(OpenMP_Fortran_FOUND)
      set(threads_test test_threads)
    else()
      message(STATUS "FKB: no OpenMP for Fortran; test ${S_PREFIX}threads is not built")
    endif()
  endif()
  foreach(t test_parity test_errors test_physics test_stop test_finalizer ${extra_tests} ${threads_test})
    add_executable(${p}${t} ${d}/${t}.f90)
    set_target_properties(${p}${t} PROPERTIES Fortran_MODULE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/${p}${t}_mod)
    target_link_libraries(${p}${t} PRIVATE ${p}test_util)
  endforeach()
  if(threads_test)
    target_link_libraries(${p}test_threads PRIVATE OpenMP::OpenMP_Fortran)
  endif()
  add_executable(${p}leak_control ${d}/leak_control.f90)
  set_target_properties(${p}leak_control PROPERTIES Fortran_MODULE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/${p}lc_mod)
  target_link_libraries(${p}leak_control PRIVATE ${S_LIBRARY})

  if(CMAKE_Fortran_COMPILER_ID STREQUAL "GNU")
    # warnings fail the build (sentinel values are compared exactly on purpose)
    foreach(t test_util test_parity test_errors test_physics test_stop test_finalizer leak_control ${extra_tests}
        ${threads_test})
      target_compile_options(${p}${t} PRIVATE -std=f2018 -Wall -Wextra -Wno-compare-reals -Werror)
    endforeach()
  endif()

  set(data ${S_DATA_DIR})
  set(work ${S_WORK_DIR})
  set(parity_files)
  foreach(f ${S_PARITY})
    list(APPEND parity_files ${data}/${f}.txt)
  endforeach()
  set(small ${data}/${S_SMALL}.txt)
  set(tests)

  add_test(NAME ${p}parity COMMAND ${p}test_parity ${parity_files})
  add_test(NAME ${p}errors COMMAND ${p}test_errors ${small} ${work}/errors)
  add_test(NAME ${p}physics COMMAND ${p}test_physics ${data}/${S_PHYSICS}.txt ${work}/physics)
  add_test(NAME ${p}finalizer COMMAND ${p}test_finalizer ${small})
  list(APPEND tests ${p}parity ${p}errors ${p}physics ${p}finalizer)
  # Ensembles (type fkb_ensemble) and a Fortran custom layer (fkb_register_layer), against Keras.
  if(S_ENSEMBLE)
    add_test(NAME ${p}ensemble COMMAND ${p}test_ensemble ${data}/${S_ENSEMBLE}.txt)
    list(APPEND tests ${p}ensemble)
  endif()
  if(S_CUSTOM)
    set(custom_files)
    foreach(f ${S_CUSTOM})
      list(APPEND custom_files ${data}/${f}.txt)
    endforeach()
    add_test(NAME ${p}custom_layer COMMAND ${p}test_custom_layer ${custom_files})
    list(APPEND tests ${p}custom_layer)
  endif()

  # Options: the quiet run must print no device notice and no fkb_physics line (verbose = .false. reaches the
  # library and the namelist); the verbose run must print each of them. Both run every option check.
  if(S_ENSEMBLE AND S_MULTI_IO)
    set(opt_cmd "$<TARGET_FILE:${p}test_options>$<SEMICOLON>MODE$<SEMICOLON>${small}$<SEMICOLON>${data}/${S_PHYSICS}.txt")
    string(APPEND opt_cmd "$<SEMICOLON>${S_MULTI_IO}$<SEMICOLON>${data}/${S_ENSEMBLE}.txt$<SEMICOLON>${work}/options_MODE")
    string(REPLACE "MODE" "quiet" cmd_quiet "${opt_cmd}")
    string(REPLACE "MODE" "verbose" cmd_verbose "${opt_cmd}")
    add_test(NAME ${p}options_quiet COMMAND ${CMAKE_COMMAND} "-DCMD=${cmd_quiet}"
      "-DREJECT=device auto|fkb_physics: |fkb: ensemble" "-DEXPECT=all checks passed" -P ${d}/run_expect_output.cmake)
    add_test(NAME ${p}options_verbose COMMAND ${CMAKE_COMMAND} "-DCMD=${cmd_verbose}"
      "-DEXPECT=all checks passed|fkb: device auto -> |fkb: ensemble of 8 members: device auto -> |fkb_physics: .* outputs. on "
      -P ${d}/run_expect_output.cmake)
    list(APPEND tests ${p}options_quiet ${p}options_verbose)
  endif()

  # Without stat: error stop with the message, nonzero exit.
  foreach(case "load_missing|missing_model.h5" "predict_shape|x has [0-9]+ rows"
                "copy|cannot be copied" "physics_uninit|not initialized")
    string(REPLACE "|" ";" parts "${case}")
    list(GET parts 0 mode)
    list(GET parts 1 regex)
    add_test(NAME ${p}error_stop_${mode} COMMAND ${CMAKE_COMMAND} "-DCMD=$<TARGET_FILE:${p}test_stop>$<SEMICOLON>${mode}$<SEMICOLON>${small}"
      "-DREGEX=fkb: .*${regex}" -P ${d}/run_expect_stop.cmake)
    list(APPEND tests ${p}error_stop_${mode})
  endforeach()

  # The finalizer frees every model: no definitely-lost block under valgrind. The control program that
  # leaks one model on purpose must be caught by the same command.
  find_program(FKB_VALGRIND valgrind)
  if(FKB_VALGRIND)
    # list separators inside one add_test argument must be $<SEMICOLON>
    set(vg "${FKB_VALGRIND}$<SEMICOLON>--leak-check=full$<SEMICOLON>--errors-for-leak-kinds=definite")
    string(APPEND vg "$<SEMICOLON>--show-leak-kinds=definite$<SEMICOLON>--error-exitcode=97$<SEMICOLON>--quiet")
    string(APPEND vg "$<SEMICOLON>--suppressions=${d}/valgrind.supp")
    add_test(NAME ${p}finalizer_valgrind COMMAND ${CMAKE_COMMAND} "-DCMD=${vg}$<SEMICOLON>$<TARGET_FILE:${p}test_finalizer>$<SEMICOLON>${small}"
      -DEXPECT=0 -P ${d}/run_valgrind.cmake)
    add_test(NAME ${p}leak_control_valgrind COMMAND ${CMAKE_COMMAND}
      "-DCMD=${vg}$<SEMICOLON>$<TARGET_FILE:${p}leak_control>$<SEMICOLON>${small}" -DEXPECT=97 -P ${d}/run_valgrind.cmake)
    set_tests_properties(${p}finalizer_valgrind ${p}leak_control_valgrind PROPERTIES TIMEOUT 600 LABELS "fortran;valgrind")
    list(APPEND tests ${p}finalizer_valgrind ${p}leak_control_valgrind)
  else()
    message(STATUS "FKB: valgrind not found; the Fortran finalizer leak check is skipped")
  endif()

  set_tests_properties(${tests} PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  # Threads: 4 OpenMP threads (on any number of cores) share one model, one ensemble and fkb_physics.
  if(threads_test)
    add_test(NAME ${p}threads COMMAND ${p}test_threads ${data}/${S_PHYSICS}.txt ${data}/${S_ENSEMBLE}.txt
      ${work}/threads)
    set(threads_env "OMP_NUM_THREADS=4;OPENBLAS_NUM_THREADS=1")
    if(FKB_TSAN)  # ThreadSanitizer is ~20x slower: one round, at most 300 columns per chunk size
      list(APPEND threads_env "FKB_THREADS_QUICK=1")
    endif()
    set_tests_properties(${p}threads PROPERTIES ENVIRONMENT "${threads_env}" LABELS "threads" TIMEOUT 900)
    list(APPEND tests ${p}threads)
  endif()
  set_property(TEST ${tests} APPEND PROPERTY LABELS fortran)
  if(S_SETUP_FIXTURE)
    set_tests_properties(${tests} PROPERTIES FIXTURES_REQUIRED ${S_SETUP_FIXTURE})
  endif()
endfunction()
