"""The official SCAN ``simple`` split (Lake & Baroni 2018; brendenlake/SCAN, BSD licence):
which of the 20,910 commands are in ``tasks_test_simple.txt``.

That split was drawn at random once, so it cannot be regenerated from the grammar; it is kept
here as one bit per command, in the order of ``scan.generate_commands()`` (bit ``i % 8`` of
byte ``i // 8`` set: command ``i`` is a test command), zlib-compressed and base85-encoded.
"""

import base64
import zlib

_TEST_BITS = (
    "c-j?KPiP$18UMYvZ`W^EBjxRQq^yl7Z$@iptGHopgi%8ZZ$>M3<0xU|D!~b~j2uzykb-D)NN;aP6J_PNW~_*y99kwq"
    "h6HjDp@kfJ7%9TYB@`u1p+}JvatWo!9{cGu!|d|D_x=8TUk}Q~FwZ=AZI0WCQTUbUI^8w(!?)g~-7BDh1+ci+_J01B"
    "V&Rbke1xKe)o-I%g=HdME)O6%vp}yN{iFe1>xc02TfI!JC<_zJ3Tz65JZmW<j4lCLV;ANhq#XHCR_E8~xYf?I(OnFv"
    "Ad`~=l{ene;5e<{LGVrlW_LKZ64?^VWye~J!A!!oq+k<R4UFPN6BjRJ;Blq}|L8&EUwIxp04($|S8gr<CF-eM5-hHF"
    "YWi}cf{_z2b-Bt_WslC8?HM~vKTi?f%Rg)gQ~yh5no7z-tHG9D!$#-4A71`^GH1Eqc=HwXmXv@r9IGb~?_<G%8XX*Z"
    ";fS3t3a+5z!O^!WxKHiLKl!Z&=MNDsCW+Q&U)(c0&4SBqyf_=!RhftvN_dk(G`?1r*UmHoM*;9-S@b#kdz@du#3Hbf"
    "A%o1X=UTK73zwx%(}c41H7_2&YX<+GZtSHhva4^ovA8&3LKx=z7YwvgErPRj-7XQaNvI&q6h8U}V*<`DW7Q4;{l)v3"
    "pW$Y>iz!4qP`53($!_)tx~|IYt@5W=0?~m`fw_h*uar6t6Cvsx%=1+ag<(t1i($aec87dD5uBJDPvx+ok|7_8ibZtN"
    "kz%I3h;38P%R!M98#z`T)e##gBBLSGMJc3m4kJdCP1T?6tBIneIj=%kXSG%HZaSHruhNfDOROn_+$^89eCyzshAAc="
    "pyjItIDb>d(~|vqs7D5w_4#Z+g80uZF0*xHEH*cI^#quQE9dS=Q+Ls|3=9yOM97tRMwos@xf&%B_&5e8z?>>39MTN&"
    "FZ~)&F#bj@{>4fCUXPDG1f%c3BxlWpr32Dlz#BCeypBHB2!7*M+s|w1E~hfYkVtq#V0%Sx1u2H1fhY&{GUlj@NUix0"
    "?#TxjuXSL~vA1Ie%__mMU^>9A*YBWXwY1FWHcZ*&Txnb}I5$RGS4`p3^U?d6UPa=*BdLWd!x%*W(GIm%)@*ushha82"
    "=D)S0+9Xl&G?`-svx)hmk50eJGyiHX?ThiduyyLeWL|0DoMH}8!I$}Ll{4<bv^5hYyWY6&IZReMn%5Gkc)GaVKG__W"
    "we|W5y39jI*!a^&F?3tqk+{K3{4w3CDLLlH#H*$+nX3%YHT!2aEgQ#jx&7J-5v)Jk-zfqLfdH&!E5d4zNUEzJ;gQql"
    "R>>~e&p)z8s=HkXKA7mH;utkJOJG+dCegiGuiv7smxzNr74B|ZisApR>#dE9;^g)guEvyJ9jmfc2UNi1C--n5TiCmF"
    "XxdAf{k2}Rf&P$VL{AtToB@)ibv9m-Ob)44$<`^)gzF2X1`6J#Vdk~Ma<ApzRD*7kNL%(C-k<LA_Do_g^>}d+)>H-@"
    "!pxCI)EQ@6TcuK+aGaA>>UI71R%yeZ3i<gUC{ungI#)<n$$Q#f`m`b>Qw{Md?qVdYUk(T}>h8L_3AHQlH>66Qkc+CQ"
    ">0a|x6MViUdSY*if8O_m6OS}sAqHm_0~p5Jct(vvYW@$^91PV<N9SE@18YgdGs=YaEYP5!;9vDV#fGLgQ?ee`QH{Th"
    "nbjd@?M0<@lOjLUF4@G^A{<~*AGkF>%l>;))Mua9_-ye9s+j?m){l90!k1&1Cd4>lt8KxaY$|({Z`uxtxrgVJu>Foa"
    "!`oYzm(Ud8V{^^#XbkwqaGrzphAnIs>auz>td-00(9mQs%TN+h+6*a`BAK2ebG^VL#%&~J8QDPnMtsp$J+rS`a%*2}"
    "_0$iCd~6tO7t^7t5Zs1G^2=N5WrBmD<bmeUe7FEZ2~Wn3d2>6hnBq81B*vfKfrM^YTQrET(q`sjTd~Z!q#NU@yFeg3"
    "p$cYB?-rPWj8AQ2Tmwr}cBsT4>S|r%wPyYnB?j-_Cfq|x&jnGsU+JH*yYlsa##Hz@>Vk0lgeGR7qR~=og0)x+XrRDy"
    "K8MBonB~{7LOhRPrIZw(x>ZakDW_Yia)7<TlKFmBZ|-*X&D11PDfbkzD3iJp_T;>Z-d<<rp65}Pb!<P{crU_BAy)x4"
    "){CqU=WbuurxnjW#)1_Iuo4)WzSVV+Dtw2EJrcd~)A2%P68^K8C8Bu)-&9?!%Xo^~-nzI?v`TzTdB+W}@Y9F-9mG1M"
    "!Z~HMvnzFoNykt0#ga`$L10GVII?Cg+$G=7a3t!eLTiEA!XE?^mN8Aq0QXP?o+lXYrdAx`G0Tx-(6Tg>S$Kb-H?*mc"
    "m`@!g^jW+X;07@II;oqF(0{Dsg{a6~emrr996V4ARdOp`*_!kUa6UWTK5FVp)FM4m{2rT!NZYD4K&}m$zfB2Xh_yj-"
    "l~y0jv?+z*u*XY!q#c;keaJ`tMfB+297V=CZ8s-xA$ZcOlj+~ks>`ILQjJJnudFb71rPB73v?Ci8nE`T3FQO*cycK3"
    "dyD#I#a^+w{~p-d-tkbNKFN$d)p|r5(`?=P5gp-<wll;hYMEsMEjlQY+~RPmb@MDU!kgLwT4|%E3V7c59MhwJCXLgc"
    "!A^7Rd+u}Up}K^y`}KIknn&_BCrN1yN`G%i)G8!?U;iJ!j~Nd"
)


def simple_test_flags(num_commands: int) -> list[bool]:
    """For each command in generation order: is it in the official simple test split?"""
    bits = zlib.decompress(base64.b85decode(_TEST_BITS))
    if len(bits) != (num_commands + 7) // 8:
        raise ValueError(f"the simple split covers {len(bits) * 8} commands, not {num_commands}")
    return [bool(bits[i // 8] >> (i % 8) & 1) for i in range(num_commands)]
