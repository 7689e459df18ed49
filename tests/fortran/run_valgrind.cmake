# Runs CMD (a ;-list starting with valgrind) and requires exit status EXPECT.
# EXPECT=0: no definite leak; EXPECT=97 (valgrind's --error-exitcode): a definite leak must be reported.
execute_process(COMMAND ${CMD} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
if(NOT rc STREQUAL "${EXPECT}")
  message(FATAL_ERROR "exit status ${rc}, expected ${EXPECT}:\n${all}")
endif()
if(EXPECT EQUAL 97 AND NOT all MATCHES "definitely lost")
  message(FATAL_ERROR "valgrind exited ${rc} but reported no definitely lost block:\n${all}")
endif()
message(STATUS "exit ${rc} as expected:\n${all}")
