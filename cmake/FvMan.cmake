# Build one man page: the hand-written roff FV_IN with its @CONFIGURATION@
# line replaced by the daemon's key table (`FV_PROG --man-keys`, run through
# FV_EMULATOR when cross-compiling), gzipped to FV_OUT. Run with cmake -P.
execute_process(COMMAND ${FV_EMULATOR} ${FV_PROG} --man-keys OUTPUT_VARIABLE keys RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FV_PROG} --man-keys failed (${rc})")
endif()
file(READ ${FV_IN} page)
string(REPLACE "@CONFIGURATION@\n" "${keys}" page "${page}")
string(REPLACE "@VERSION@" "${FV_VERSION}" page "${page}")
get_filename_component(name ${FV_OUT} NAME_WLE)
get_filename_component(dir ${FV_OUT} DIRECTORY)
file(WRITE ${dir}/${name} "${page}")
execute_process(COMMAND ${FV_GZIP} -9nf ${dir}/${name} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip ${dir}/${name} failed")
endif()
