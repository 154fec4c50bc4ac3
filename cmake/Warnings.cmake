# Compiler warning policy for every Flotilla target. Kept out of component files.
include(CheckCCompilerFlag)

set(FLOTILLA_WARNINGS
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith
  -Wformat=2 -Wformat-nonliteral -Wundef -Wvla -Wwrite-strings -Wdate-time
  -Wno-unused-parameter -Wno-missing-field-initializers)
foreach(flag IN LISTS FLOTILLA_WARNINGS)
  string(MAKE_C_IDENTIFIER "HAVE_WARN${flag}" var)
  check_c_compiler_flag(${flag} ${var})
  if(${var})
    add_compile_options(${flag})
  endif()
endforeach()
if(ENABLE_WERROR)
  add_compile_options(-Werror)
endif()
add_compile_options(-fno-strict-aliasing -fstack-protector-strong)
