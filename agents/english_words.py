"""English words near the shell's command words: spelling correction leaves these alone.

"sings" is one letter from "settings" and "tokens" one from "token", yet both are real words a
person meant; only words that are no dictionary word ("laod", "strat") are corrected freely. The
list holds every word of a dictionary within edit distance 2 of a command word (the rest can never
be corrected, so they need no entry). Generated, not hand-written:

    .venv/bin/python -m agents.english_words /usr/share/dict/words   # Debian's wamerican

rewrites _TEXT below from the dictionary and the current command vocabulary; run it after
adding command words.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_TEXT = """
aaa abaft abase abash abate abbot abbott abc abduct abdul abe abed abet abets abetted abetter abetters
abetting abettor abide abject able ablest abm abms abode abort aborts abound above abrupt abut abuts ace acid
acquit acre acres act acth actions active ada adage adapt adapts add aden adept adepts adj admit ado adobe
adolf adolph adopted adoptions adopts adore adorn adroit ads adult adv advt adz aegis aeon aerate aerie aery
afc afire afoot afoul aft after again agape agate agave age aged agency agent ages aggie agile aglow agnes
agnew agni ago agra agreed agreements agrees ague aha ahab ahoy aid aide aiken ail ailed ails aim aimee aims
air aired aires airport airs airy ais aisle akin akiva ala alas alb albee albs alcove aldo ale ales aleut
algae ali alias alibi alice alien align alike aline alined alines alisa alit all allie allow ally alma alms
aloe aloes aloft alone along aloud alpine alpo alps also alt alta alter alto alts alum alums alva alvin alyce
ama amber ambled amd amen amid amie amir amok amount amounts amour amp amps amt amy ana anal analog analogue
and anew ani anime anise ankh ann annual ansi ant anti anus any aol apace apache apart ape aped apes apex
aphid apia aping apo app appal apple apply apps apr april apse apt apter aptest ara arab arabs araby aral arc
arch are area ares argue aria arid arise ariz ark arks arline arm arms army aron arose arrive art arty asap
ascribe ash ashe ashy asia aside asked askew asking asks asl asoka asp aspect aspen aspic asps ass assailable
assn asst astarte aster astern asters astir aston astor astute atari ate atm atom atone atop atp ats attest
atty atv audi audit aug auk auks aunt aunts aurae authenticated authenticates authenticity ava avail avast ave
avernus avg avid avis avoidable avow awash awe awl awls awoken awry aws axe axis axle aye ayes azt baa baal
baath babe bach back backed backer backers backhand backing bad bade baez bag bah bait bake baked baking bald
balding bale bali baling balk balked balking balks balky ball balling balm balms ban banach banal bane bani
bank banked banking banning bans banter bar barb bare barest barf barge bark barked barking bart barter barth
baruch base baser basest bash basin bask basked basking basks bass bast baste basted bastes bat batched
batches bate bated bates bath bathe bather baths batik baton bats batted batten batter batters battery battier
batting batty batu baxter bay bayed bayer bayes bays bbb bbc bbq bbs beach bead beaded beak beaker beam bean
bear bearer beast beasts beat beaten beater beaters beating beatings beatrix beats beau beaver became beck
becker bed bedder bedding bede beds bee beech beef been beep beeper beer bees beet beets befit beg began begat
beget begging begins begone begot begs begun behan behave behest behind beige being bela belch belgian belie
bell below belt belted belting belts ben benched benches bend bender bends benet benign benin benny bent bents
benz berate berber beret berg bergen berger beria bering berle berlin berm bern berne bernice bert berta berth
beset besets besetting besom besot besots bespeak bess bested besting bestir bestow bests bet beta betcha beth
bethe betoken bets betsy bette betted bettered betters bettie betting bettor bettors betty bettye bevel bevy
bewail bewails beyer bff bib bible bic bicker bid bide bier biff biffed biffs big bigot bike bile bilge bilk
bilking bill bills billy bin bingo binning bins biped birch bird biro bit bitch bitchy bite bits bitten bitter
bittern bitters blab blacked blacken blackened blackens blanch blast blaster blat blats bldg bleach bleak
bleat bled bleed blench blent bless blest bletch blew bliss blivet bloat bloated blob bloc bloch blog blond
blonde blood blooded bloom blot blotch blots blotter blouse blow blower blowers blown blows blt blts blu blue
bluest blunt blvd bmw boa boar board boarded boas boast boaster boat boated boater boats bob bobs bode boded
bodes body boer bog boga bogie bogon bogs bogy bohr boil boise bola bold bole boll bolt bolts bomb bombed
bombers bond bonded bone bong bonn bono bony boo boob boobs booby booed book bookend books boole boom booms
boon boone boons boor boors boos boost boosts booted bootee booth booths bootie boots booty booze boozy bop
bops bore bores borg bork born borne boron boru bosch bose bosh bosom boss bot botch both bother botox bound
bounty bout bouts bow bowel bowels bowen bower bowl bows box boxen boy boyd boyer boyle boys bozo bozos bpm
bra brace bracken brad brag brahe brain braise brake bran branch brant bras brash brass brat brats brave bray
breach break breast bred breech breed brent brest bret brett brew brexit bribe brick brie brim brine bring
brink briny brisk brit britt broad broke broken brood brook broom brooms bros broth brow brr bruin bruins
brunch bruno brunt brush brut bryce bsd btu btw buck bucked bud budge buds buff buffer bug bugs buick built
bulb bulge bulk bulking bull bulls bully bum bumblers bummers bump bumpers bums bun bunch bunche bung bunging
bungs bunin bunk bunking bunks buns bunt bunting bunts buoy bur burch burg burger burgle burgs burke burl burn
burning burns burnt burp burs burst burt bury bus busch bush buss bust buster busts busy but butch butler buts
butt butte butted butter butters buttery buttes butting buy buyer buys byers byes byob bypast byrd byte bytes
cab cabot cad caedmon cage cagy cain caking cal calf cali calk calking calkings calks call calling calm
calming calms calve calvert calving cam cambers camp campy cams can canal cane canning canoe canopy cans cant
canter canting cap caparison cape caph capone capri caps capt captions car carat care carp carpi cart carter
carting carve carved carver carving cary case cash cask casks casper cast caste caster casters castes casting
castor casts casual cat catch catchy cater cations cato cats catt catting catv caulk caulking cause cave caw
cbs cease cede celeste cell celt census cent center ceo cerf cerise cervices cfc chad chads chafe chaff
chaffing chafing chain chaining chair chairing chaitin chalet chalk chalking champ champing chan chancing
chang changing chant chanting chants chanty chaos chap chapping chaps chapt char charging charm charming
charring chars chart charting charts chary chase chasing chasm chaste chaster chastest chats chattering
chattier chattily chatty che cheap cheat cheating cheats checkpoint cheep chef chem chen chest chew chi chic
chichi chick chico chid chile chill chin chink chip chit chits chive chloe choke choose chop choppy chops
chore chose chosen chou chow chows chug chum chute cia cicatrix cid cinch circe cis cite city clad clam clams
clan clang clank clans clap clare clarification clash clasp class classifications clause claw clay cleat
cleave cleaved cleaver cleaves clem clench clew click cliff clime cline cling clink clint clip clipt clit
clits clive cloak cloaked cloche clock clod clods clog clogs clomp cloned clones clop clops closed closely
closer closes closest closet closets closure clot cloth clothe clots clotting cloud clouded clout clove cloven
clover cloves clown clowned clowns cloy cloyed cloys clue clues clung clunk clyde cnn coal coaled coarse coast
coaster coasting coat coated coating coats coax coaxed cob cobb cobs cock cocky cod coda codded code coded
codes codex cods cody coed coeval coffer coffin cog cogs cohan cohen coif coifing coil coin coke coked cokes
col cola colbert colby cold cole colin colo cologne colon colonel colones colons colony cols colt com coma
comb combed come comfy comm command commanded commander commanders commando commandoes commandos commas
commend commends comments commons communes como compact companion company compaq compared compares comparisons
compass compassion compels compete compile comply compo comport compose composes compote compressed compresses
compressor comprise comprises compute comrade con conceit concept concern concert concerti concerto concerts
conch condensation condense cone cones confab confer confers confide configurations confine confirm cong
congest congress conic conj conk conking conn connect conner connery connie conning cons consent conservation
conserve consign consing consisted consistently consisting consort cont content contest context contort
convene convenes convent convents converge converged converges conversational conversations conversed
conversely converses conversion converted converter convertor converts convex convey conveys convict convulse
coo cook cooke cooky cool coon coons coop coops coos coot coots cop cope coped copes copley copra cops copse
cora cord corded core cores corey cork corm corn corny corot corp corps corpse corset cory cosby cosplay cost
costs cosy cot cote cots cotter count counts county coup coupe coups course court cove coven cover covers
covert coverts coves covet covey cow cower cowhands cowl cows cox coy coyly cozen cozy cpa cpi cpo cpr cpu
crab crabs craft crafting crag cram crane crap crape crash crass crate crating crave craw cray craze creak
crease cree creed creek creel creep crepe crept crest crete crevice crew crib crick croat croce crone crones
crony crook croon crop crops cross croup croupy crow crt crud crunch crush crux cruz cry crypt css cst cub
cubed cubit cubs cud cuds cue cues cuff cull culls cult culvert cum cums cunning cunt cunts cup cups cur cure
curie curl curs curse curt curve curved curving cusp cuss custer cut cutest cuts cutter cutting cuttings cvs
cyclone cypress cyst czar dab dacron dad daemons daffier daffy daft dafter daftest dais daisy dale dali dalton
dam damion damn damon damp dams damson dan danial dank danton dare dark dart darvon dash dat date dative daub
daunt dave dawson day dayton dds ddt deacon dead deaf deafer deal deals dealt dearth death deaves deb debase
debate debit debt dec decal decalogue decals decease deck decompress decoy dee deed deem deep deeply deer
deere defame defect defer deference defile deflate deft defter defy degree deify deign deism deject dejects
del delay delegate deleon deleted deletes deli delicate dell delta delude deluge deluxe delve delved delving
dem demeter demo demoed demon demons demos demote demount den dena deng denial denials denote dens dent dental
denting denver deny deon depict deplete depleted depletes deplore deployed deploys deport depose depot depp
dept depute deputy derail derails derive derived deriving described describes descried descries deserve
deserved deserving desk desks detach detailed detain detains detect deter determinate detest device devil
devils devin devon devote dew dexter dhs dial dialed dialing dialogs dialogues dials diaper diatom diaz dice
dicier dick dicker dicks dicky did dido die died diem dies diet dieter diffed differed differences different
differs diffidence diffs dig digger digs dike dilate dill dillon dills dilly dilute dim dime dimer dimmer dims
din dina dine diner ding dingo dink dinker dinky dinner dinning dino dins dint dion dior dip dipper dips dire
direr dirge dirk dirks dirt dis disc disco discs dish disks dismay displace displayed displays disport diss
distort ditch dither diva dive diver divergences divergent dix dmz dna doa doc dock doe doff doffed doffs dog
dogie dole doll dolt dome don done donning dons donut doom dooms door dope doped dopes dopey dopy dora dork
dorm dorset dorsey dory dos dosage dose dot dote dots dotting doubt doug dour douse dove dover doves dovetail
dovetails dow dowel dowels downloaded downloads dowse doyen doz doze dozen dpi dps dpt drab drabs drag drake
dram drape draw dray drench dressage drew drift drifter drill drink drip drips drive droid droll drone drool
droop droops droopy drops dropsy dross drove drown drub drubs drug drugs drum drums drunk drunks dry drys dst
dtp dual duane dub dubs duck duct dud dude duds due duel dues duet duff duffer duffers duffy dug duh dui duke
dull dulls dully duly dumb dumber dump dun dunant dune dunes dung dunging dungs dunk dunking dunks dunn
dunning duns duo duos dupe duplicated duplicates duplicator duplicity durant duroc duse dusk dusky dust duster
dutch duty dvd dvr dvrs dwi dye dyed dyer dyes dyke each ear earl earle ears earth ease eased easel eases
easier easiest east easter eastern easters easts easy eat eater eating eats eave eaves ebay ebb ebbed eben
ebert ecg eco edam eden edged edict edicts edify edit edith edits edna eds edt eec eeg eel eels eeo eerie
eerier eery effect efl efren egg egged egis ego egret eiffel eire ejected ejects eke eked ekg elam elapse
elate elbe elbow elect elects elf eli elicit elide eliot elisa elise elite elk elks ell ella ellis ells elm
elma elmo elms eloise elope eloy elsa else elul elva email emails emanuel embeds ember embers emblem embody
embodying emcee emceed emend emending emetics emil emile emir emit emits emo emote emoted employ empress ems
emt emu enact enamel encase enclose encumbers end ended ends eng enid enif enlist enoch enos enrage entail
entails enter entry environmental environments envoy envy eon eons epa epic epics equal equip equity era eras
erased eraser erasers erases erasure erato ere erect erects erg ergs eric erica erich erick erie erik erin
eris erises erma erna ernie ernst erode eros eroses err erred erring errs erse ervin esau esl esp espied espn
espouse espy esq est estate estates ester eta etc etch etd ether ethics etna eton eula eva evacuate evacuated
evacuates evade evaded evaluated evaluates evan evans eve even event ever evert eves evian evicted evicts evil
evils evince evita ewe exact exalt exam excise excite excl excuse exec execs exert exes exile exist exists
exited exits expanse expect expedient expedients expense experimental experimented experimenter experimenters
expire explicate explode explore expo export expos exposed exposes exposure exterminate exult exults eye eyed
eyes eyre faa fable face facet facile fact factor factorize facts fad fade faded fads fag fagin fagot fags
fahd fail failed fails fain fainer fainest faint fainter faintest fair fairer fairest fairs fairy faith
faithfully faithfuls fake faker faking fall falling false falser falsest falter falters fame fan fang fanning
fans faq faqs far farce fare fared fares farm farmer farsi fart farted farther farthest farts fascist fasted
fasten fastener fastens fastness fasts fat fatah fate fated fateful fates father fats fatten fatter fattest
fattier fattiest fatty fault faun fauns faust fawn fax fay faye faze fbi fcc fda fdr fealty feast feasted
feasts feat feats feb fecal fed fee feed feel fees feet feign feint fell felt felting fem fen fence fend fens
fer feral ferber fergus fern fervid fervor fest fester festers fests feta fetal fetched fetches feted fetich
fetid feting fetish fetter fetters fetus fever few fey fez fha fiat fiats fib fiber fibs fica fiche fickle
fiddle fidel fido fie fief field fierce fiery fife fifes fig figs figure fiji filch filed files filet filets
fill filled filler fillet fills filly film filmed films filmy filter filth fin finale finality finch find fine
fined finer fines fink finley finn fins fiord fir fired fires firm firmed firmer firms firs first firth fish
fisher fisk fist fists fit fitch fitful fitly fits fitter fittest fitting fittings five fiver fives fix fixed
fixer fixes fizz fizzle fla flab flak flaking flare flash flasher flashest flask flat flats flatt flatter
flattest flatting flaw flea fled flee flees fleet flew flex flick flicker flied flier flies fliest flint flip
flirt flit flits flo float floated floe floes flog flood flooded flop florin floss flout flow flowed flower
flowers flowery flown flows floyd flu flue fluster fly fmri fms foal foaled foam foamed foch foe foes fogy
foible foil foiled foils foist fold folded foley folk fond font foo food fool foot foots fop fops for fora
forage force ford forded fore forename fores forge fork form forster fort forte fosse foster fosters found
fount founts foxy fpo frag frame fran fraser frat frats fray freak fred freda freed freeload freely freer
frees freest freeze french freon fresh fret frets fretting freud frey freya fri fried frier fries frieze frill
frisk fro frog from fromm front frost froze fruit fry frye fryer fsf ftc ftp ftps fuck fucker fud fudge fuds
fuel full fulls fully fum fumblers fume fums fun fund funding funds funk funking funks fur furl furs fury
furze fuse fuss fustier fustiest fusty futile fuze fwd fyi gab gabs gad gaea gael gaff gag gage gain gains
gait gaiter gal gala gale gall galling gals gap gape gaps garb garbo garbs garter gary gas gash gasp gasser
gate gaunt gave gawk gawking gay gear ged gee geed geek gees geez gel geld gels gelt gem gems gen gena gene
genet genome gens gent gents geo ger gerber gere germ germinate germinated germinates gestate gets getting
getty getup ghats ghent ghost ghosts ghq ghz giant gibe gibed gide gif gift gig gil gila gild giles gill gills
gilt gin ginning gino gins gird girl girt gish gist give glad glee glen glib glide glint gloat gloated glob
globe gloom glop gloss glove glover glow glowed glower glowers glows glum glut gmat gmo gmt gnash gnat gnats
gnaw gnp gnu gnus goa goad goaded goads goal goat goats gob god godot goes goff gog gold gonad gone goo good
goodby goodbyes goodbys goodie goodly goody goof gook goon goop goose gop gore goren gores gorge gorp gorse
gory gosh got goth gout gov govt gpa gps gpu grable grabs grace grad grade graded grads grady graft grail
grain gram grams grand grant grape graph grasp grass grate grave gravy gray grays graze grease great grebe
greed greek green greer greet greg grenade grep greta grew grey grid grill grim grin grind grinning grins grip
gripe gris grist grit groan grog grok groom grooms grope group grout grove grow grower grub grubs grue grues
grunt grunting grunts grus gte guam guano guest guff gui guile guilt gulf gull gulls gully gulp gum gums gun
gunk gunning guns gurgle gus gust gut guts gutter gutting guy guys gwen gybe gybed gym gyms gyp gyps haas
habit hack hacked hacking had haft hafts hag hags hah hahn hail hails hair haiti hake hal hale haled haler
hales halest haley half haling hall halls halo haloing halon halos hals halted halter halting halts halve
halving ham hamlet hams hamster han hand hang hank hans hard hare hark harking harlot harm harmon harp harsh
hart harte harts has hash hasp haste hasted hasten hastes hastier hastiest hasting hasty hat hatch hate hater
hath hating hats hatter hatting haul hauls haunch haunt have haw hawk hawking haws hay hays haze hazy hbase
hdd head headed heal healed healer heals healthy heap heaps hear hearse heart hearth hearths hearts hearty
heat heater heath heaths heating heats heave heaved heaven heaves heaving heavy hebe heck heed heel heels heep
heft hefting heir heist held helen helene helga helix hell hello hells helm helms helot helped helper helps
hem hemmed hemp hems hen hence hench hens hep her hera herb herd herded herder herding here hero herring hers
hes hess hester hew hewn hews hex hey hgt hhs hiatus hick hickory hid hide hie hied hies high hike hill hills
hilly hilt hilts him hims hint hip hips hire hired hires his hiss historic hit hitch hits hitter hitting hiv
hive hmo hms hoard hoarded hoarse hoax hoaxed hob hobo hobs hoc hock hod hods hoe hoed hoes hoff hog hogan
hogs hoist hoists hokey hold hole holst holt holy home homy hon hone honest hong honk hood hooded hoof hook
hoop hoot hoots hop hope hoped hopes hopi hops horde horded horn horne horse horsed horses horsey horsy horton
hos hose hosea hosed hoses hosted hostel hosts hot hotel hotels hotter hound hour house hov hove hovel hovels
hover how howdy howe howl howls hows hrh hrs hst http huang hub hubs huck hud hue hues huff hug huge hugs huh
hui hula hulk hulking hull hulls hum hump hums hun hunch hung hunk hunks huns hunt hunting hunts hurl hurst
hurt hus hush husk hut hutch huts hutu hwy hyde hype iago ian ibm ibo icc ice icu icy ida ide idle ids ied
ieee iffier iffy ifs iii ike ila ilene iliad ilk ilks ill ills illus image imbed imbedding imbeds imbued imf
imho imo imp impact impart imparts implicate implore important imported importer imports importune impose
impotence impress imprint imps impure ina inbox inc inca inch inclose inconsistency inconsistent incs ind
indifference indio indy ines inez infect infer inference infidelity infix inflect inflow inform ing inge ingot
inject ink inks inky inn inning inns inroad ins inscribe insect insects insert inset insetting insistent
inspected inspector inspects install insults int into intro inuit inverse invert ion ions ios iou ipa ipad ipo
ira iran iraq iras irate irc ire irene irish irk irma iron irons irs irving isle ism isms iso isp iss italy
itch ito its iud iva ivan ives ivf ivies ivs ivy jab jabot jack jacked jacking jaded jain jam jami jams jan
jape jasper jaunt jay jed jeep jeer jeez jeff jell jeri jerk jerked jerking jess jest jester jesting jests
jesuits jesus jet jets jetted jetting jew jfk jibe jibed jiffy jill jilt jim jive joan jody joe joel joey join
joint joist joke joked joker jokes jolt jon jorge jose josh jot jots jotting jottings joust jove joy jpeg juan
juana judge jug jugs juice juicer juicier juicy jul july jump jumpers jun june junes jung junk junking junks
juno jury just juster justest jut juts jutting kalb kale kali kans kant kari karl kate kay kaye keats keel
keen keep keg kelli kelly kelp kemp ken kenning kens kent kept keri kern kerr ketch keto kevin key kfc kgb
khan khz kia kick kicker kid kidd kids kiel kiev killed killer kills kiln kilns kilo kilos kilt kilts kim kin
kind king kink kiosk kip kirk kiss kit kite kith kits kiwi kkk klan klee klimt kline kmart knave knee kneed
knell knew knit knoll knot know koan kobe kohl kook kopek kory kowtow kroc krone kuhn kunming kurd kurt kyle
lab labs lace laced lack lacked lacking lad lade laded laden lades ladled lads lady lag lags laid lain lake
lam lama lamas lamb lambed lambs lame lamed lames lamp lamps lams lance land landed lane lank lao laos lap
lapp laps larch lard larded large lark larking lars las lase lased laser lash lass last lasted lasts lat latch
late lately latent later latest lath latin lats latte latter laud lauded laue laugh launched launcher launches
lava laval law laws lax lay layout lays laze lazed lbj lbs lcd lea leach lead leaded leaden leader leads leaf
leafed leafs leafy league leah leak leaked leakey leaks leaky lean leaned leaner leann leanne leans leap
leaped leaps leapt lear learn leary leas lease leased leases leash least leaved leaven leavens leaves leaving
led leda ledge lee leech leek leer lees left lefter leg legal legate leggin legion legit legree legs lei leif
leis lela lemme lemon len lena lend lenin leno lens lent leo leos lepke lept lerner les lesa less lest lester
let leta lethe lets letter letters letting levee level lever levi levitt levy lew lewd lgbt liar lib lice
licit lick lid lidded lids lie lied lief liefer liege lien lies lieu life lifer lift lifts light lii like
liken likest lila lille lilly lilt lilts lily lima limb limbers limbs lime limeade limes limit limn limns limo
limos limp limps limy lin lina linage lind line lineages lineal linear lingo link linkage linkages lint lints
lion lip lips lira lire lisa lisle lisp lisps listed listen lister liston lists liszt lit lite litter live
lived liven liver lives livest livy lix liz liza llama llamas lloyd loader loaders loads loaf loafed loafer
loafs loam loamy loan loaned loaner loans loath loathed loaves lob lobbed lobe lobed lobs local located loci
lock locked loco lode lodes lodged lodging lodi lodz loft lofted log logan loge loges logged logging logic
logins logo logon logons logos logs loin loins loire lois loki lola loll lolled lolls lome lon lone loner long
longed longing look looked loom loomed looms loon loop looped loopy loose loosed loot looted loots lop lope
loped lopes lopez loping lopped lops lora lorain lord lorded lords lore loren lori lorie lorn lorre los lose
loser loses losing loss lost lot loth lotion lotions lots lott lotto lou loud louder louie louis louse lout
love loved lover loves loving low lowe lowed lower lowers lowery lowing lows lox loyal loyd lpn lpns lsd ltd
luann luau lubbers lubed luck lug lugs luis luisa lula lull lulls lully lulu lumber lumbers lump lumps luna
lunch lung lunge lunging lungs lupe lupin lurch lure lush lust luster lusts lusty luvs luz lvi lxi lxii lxiv
lxix lye lyle lyly lyme lynch lyre lyx mabel mac mace mach mack mad made mae magi mai main maj make making
maldive male mali malice mall malone malt malta malting malts mammal mammon man manaus mane manful manga
mangiest mani mania maniac manias manifested manifestly manifesto manifestos manifests manila manliest manna
manning mans mantel manually manuals manuel manuela manure mao map maps mar march mare marge mari mark marking
marsh mart mary mas masc mash masher mask masking masks mass massage massaged massages mast master masters
mastery masts mat match mate math matrices matrix mats matt matte matter matting matts maui maul mauve maven
maw max may maze mba mci mead meade meal meant meat meats med medal medals medea medics meek meet meeting
meetings meg megan meh mel meld melt melting member members meme men menace menage mend mendel menial mental
menu meow merced mercer mere merge merged merger merging merit merits merle merrick mervin mes mesa mesh mess
messages met meta metal metals mete meted meter meting metric metrical metros mew mewed mfg mfr mgm mhz mia
mice mich mick mid midpoint midst mien miff miffed miffs mig mike mil mild mile mileage miler miles milf milk
milking mill mills milne milo mils mime min mine mink minsk mint mips mir mira mire mired mires miro misc
mislay misplay misplays miss mist mister mists misty mit mitch mite mitt mix moan moaned moans moat moats mob
mobil mobs mock mod modal modals modded mode modeled modem modems modern moderns modes modest mods module
modules modulo modulus moe moet mogul moguls moho moire moist mojave mold molded molder molders mole moles
moll molls molt mom moment moms mon mona monet money monk mono mons mont monte month monty moo mooc mood mooed
moog moon moons moor moore moos moose moot moots mop mope moped mopeds mopes mops moral morals more mores
morin morn morns moro morose morse morsel morsels mort mos moses mosey moseys moss most mosul mote motel
motels motes moth motions motive mott motto mound mounds mounted mountie mounts mourn mourns mouse mousy mouth
moved mover movers moves movie movies mow mowed mower mowers mown mows mpeg mpg mph mri mrs msg mst mtv muck
mud muff mug mugs muir mule mull mulls mum mumblers mummers munch mung munging mungs muse musk muss must
muster mutant mutate mute mutest mutt mutter mutual mvp myspace myst nab naive nam name nan nanking nap napa
nape naps napster nark narking nary nasa nash nasser nastier nastiest nasty nat nate nations native natl naval
nave nay nazi nco neal neat neater neath ned need neg nell neo nepal nerd nerf nero nerve nerved nerves
nervier nerving nervy nest nesting nests net nether nets netted netter netters netting nettling neuter nev
neva never new newt nexis next nfl nhl nice nick nike nil nile nine niobe nip nips nit nite nits noah nobel
nod nodal nodded node nodes noe noel noels noggin noise nomad nome non none nook noon noose nope norad norm
norse nos nose nosh nosy not notch note notions noun nouns nov nova novae novel novels now npr nsa nub nubs
nudge null nulls numbed number numbered numbest numbness numbs nun nuns nurse nut nuts nutting nwt nyc oaf oak
oaken oaks oar oared oas oat oaten oath oats obese obey obit object oboe observe observed observer observing
obverse ocean oct odd ode odell oder odes odets odin odis odom ods off offer offloaded offloads oft often
ogden ogle ogre ogres ohm ohms oho ohs ohsa oil oiled oils oily oink oise oked okla oks ola olaf olav old
olden olen oleo olin olive oliver olives olsen oman omen omens omit omsk one onegin ones onions ono onto onus
oodles oops oort ooze opal opec opel opened opener openly opens opera opine opinions oppose oppress ops opt
opted optics opting option optional optioned opts opus ora oral oran orate orations orb orc ore orem oreo ores
orgy orient orin orly orr orval osage oses oslo otis otoh otter otto our ours oust ouster out outage outs ova
oval ovals ovations oven ovens over overt owe owed owen owens owes owl owls own owns oxen oyster ozone paar
pabst pac pace paced paces pack packed packing pact pacts pad pads page paid paige pail pain paine pains paint
paints pair pal pale palest paling pall palling palls palm palming palms pals palsy pam pan pane pang panning
pans pansy pant pants panty pap papa papal paps par parc parch pare parent paring park parking parole parr
pars parse parsi part parts party pas pasco pasha pass passage passer pasta pastas paste pasted pastel pastern
pastes pasteur pastie pastier pastiest pastor pastry pasts pasty pat patch patchy pate path pats patsy patter
patti patting patty paul paula pauli paunch paunchy pause pave paw pawl pawn paws pay payload pays pbs pbx pcb
pcs pct pdf pdq pea peace peach peak peaks peal peale pear pearl pears peary peas pease peat peck pecs pedal
pedro pee peed peek peel peep peer peers pees peeve peeved peeving peg pegs pei pele pelee pelt pelting pen
pena penal pence pend penn penning pens pent peon pep pepin peps per perch percy perez performances peril perk
perked perking perks perky perl perls perm permed perming perms peron perot perplexing perry perseus pert
perter perth peru peruse pervert peso pest pester pests pet petal petals pete peter petra pets petted pettier
petting pew pews pewter pfc pgp phage phase phd phelps phil phish phoebe phone photo php phrase piaf pick
picker pict pie pied pier piers pies pig piing pike pile piled piles pilfer pill pills pin pinch pine ping
pink pinning pins pint pinto pints pip pipe piped piper pipes pips piquant pis pisa piss pit pitch pitons pits
pitt pitting pkg place plaint plait plane plant plaster plate plead pleaded please pled pliant plinth pliny
plo plod plodded plonk plop plot plover plow plowed plows ploy plug plugin plum plumbers plums plunge plus ply
pmed pming pms pod podded poe poem poet poi point points pointy poise poke poked poker pokes pokey poky pol
pole polk poll polls polly polo pols pomaded pond pone pony pooh pool poole poop poor pop pope popes poppy
pops pore pores poring pork porn port portions pose posh posit poss posse post poster posts posy pot potency
potion potions pots potter potting pound pout pow power pox praise pram prank prate pratt pray preempts preen
prep pres prescribe prey priam price prick pricy pride pried pries priest prig prigs prim prime primp primps
prince printed printer prints prior prism prius privet privy prize pro probate probed probes problem prod
prods prof profits profs prom promo promos promote promotes prompt prompted prompter prompters promptest
promptly proms pron prone prong pronto proof prop propel proper props pros prose prosy proud prove proved
proven proves provo prow prowl prows proxy prude pruitt prune prunes pruning prut pry prying pshaw psst pst
pta pub pubs puck pucker pudgy puff puffer pug puget pugh pugs puke pulled puller pullet pulley pulls pulp
pulps pulpy pulse puma pump pumpers pun punch punk punks punning puns punt punting punts puny pup pupa pupae
pupal pupil pups purdue pure puree pureed purees purer purged purges purim purina purist purl purled purls
purple purr purred purrs purse pursed purser purses pursue purus purvey pus push puss put puts putt putter
putting puzo pvc pwn pwns pyle pym pyre pyx qom qua quack quacked quackery quacks quad quads quaff quail
quaint quake quaker qualm quanta quantify quantity quantum quark quart quarto quarts quartz quash quasi quay
quays quell quench ques quest quiche quiches quicken quickens quickest quickie quickies quickly quid quids
quiet quieter quiets quill quilt quilter quilts quince quincy quine quinn quip quips quire quirk quirked
quirkier quirks quirky quite quito quits quitter quiver quiz quoit quoits quota quote quoth quran race rack
racked racking rae raf raft rafter rag rage ragout rags rain raining rains raise rake raking ram rama ramon
ramp rams ran ranch rand randal rang ranging rank ranking ranks rant ranter ranting rants rap rape rapid raps
rapt rare rash rasher rashest rasp rasta raster rat rate rations rats ratting raul raunchy rave raw ray rays
raze rbi rca rda rds reach read real realty ream reamed reamer reams reap rebate rebuts reconfiguration recopy
recover rectories red redeploy redone reds reed reef reek reel reese reevaluate reeve reeved reeving ref
refile refit refs regain regal regale regime regina region regulus rehearse reich reign rein reining reins
reinstall reis reject rejects relapse relate relearn released releases relegate relive reload reloaded reloads
rely rem remade remake remit remodel remodels remorse remote remoter remotes remount removal removed remover
removers removes rems rena renal renamed renames rend rending rends rene renee renege reno rent renter renting
rents renumbers reopen rep repast replay replete replicate reply report repose reprint reprove reps rerun
rerunning reruns resale resales resells resents reserve reserved reserving reset resets resetting resin
resists resolve resort resorts resp respect rest restarted restarts restate resting restore rests result
resulted resume resumes retail retails retain retains retake retard retch retort retries retry reuse rev reva
revamp reveal revel reverse review revive revoke revolts revolve revs revved revving rex rfc rfcs rfd rhee rho
rhone rib ribs rice rich rick rid ride rids riel rife rifer riff riffed riffs rifle rift rig rigs rile riled
riles riley rilke rill rills rim rime rims rind rinds ring ringing ringo rings rink rinks rinse rinsing rio
rios riot rip ripe ripen riper rips rise risk risks risky rite rival rna road roadbed roads roam roamed roams
roan roans roar roared roast roaster rob robe robed robes robin robot robs robt rock rod rode rodeo rodeos
rodin rods roe roeg roes rofl roget roil roku role roll rom rome romp romps ron rood roods roof roofs rook
rooks roomed roomer rooms roomy roost root roots rope roped ropes rory rosa rose rosin ross roster rosy rot
rotate rotc rote roth rotor rots rotting round rounding rounds rouse rout routs rove roved rover roves row
rowe rowel rowels rower rows roxy roy rpm rps rsv rte rtfm rub rubbers rubbing rube ruben rubens rubes rubin
rubs ruby rude rudy rue rued rues ruff ruffing ruffs rufus rug rugs ruhr ruin ruing ruining ruins ruiz rule
rules ruling rum rump rumps rums rune runes rung rungs runic runnier runny runt runts ruse ruses rush rushing
rusk rusks russ russo rust rusting rusts rut rutan ruth ruts rutting rvs ryan rye saab saar sabin sac sack
sacked sacking sacs sad sade safe sag saga sage sager sages sago sags said sail saint sake saki saks sal sale
saline saliva salk sallow sallower salmon salon salt salter saltest salting salts salty salve salved salver
salving sam same san sandal sane sank sans sap sapped saps sara saree sari sars sarto sase sash sass sat sate
sated sates satiate satin sating sauce saul sausage save saved saver saving saw sawed sawn saws sax say says
scab scabs scad scads scags scale scams scan scans scant scants scar scarce scare scarf scars scary scat scats
scatting scene scenting scheat schist scion scone scoop scoot scope scorer scot scots scout scow scowl scows
scrap scrape scraps scribe scrimp scrimps scrip scrips scripted scripts scud scull sculpt scum sea seabed seal
sealed sealer sealing seals seam seamed seaming seams sean sear seared searing sears seas seat seated seating
seats sebring sec secs sect sects secy sedate sedating seder sedge seed seeded seeding seeds seedy seeger
seeing seeings seek seeker seeking seeks seem seemed seeming seems seen seep seeped seeping seeps seer seers
sees seething sega segre segue segued seine seize seized seizing select self sell seller selling selves semen
semi sen senate send sender sending sense sensed sensing sent sep sepal sepia sepoy sept sera serape serb
serbs sere serene serener serer serf serfs serge sergei series serous serra serried serum servant servers
serves serviced services servicing servile servings servo servos sesame set seth seton sets settee setter
setters settler settling setup seven sever severe severn severs sew sewed sewer sewing sewn sews sex sexed
sexes sexier sexing sexist sexting sexy sgt shack shad shade shaded shadow shads shaft shafting shafts shag
shags shah shahs shake shale shall shalt sham shame shams shane shank shape shard share shari sharing shark
sharp shat shaun shave shaved shaver shaving shaw shawl shawn she shea sheaf shear sheath sheave shed sheen
sheep sheer sheet sheeting sheik shelf shell shelve shelved shelving sheol sherd sheree shes shied shift shill
shim shin shine shins shiny ship shire shirk shirt shit shits shitting shiver shlep shoal shock shod shoe
shoed shoes shone shoo shook shoon shoos shoot shop shops shore shoring shorn short shortage shot shots shout
shouts shove shoved shoving showdown showed shower showers showery showier shown shows showy shrank shred
shrek shrew shriek shrieks shrift shrike shrill shrimp shrine shriner shrines shrinks shrive shrived shriving
shrove shrub shrug shrunk shtick shtik shuck shula shun shunning shuns shunt shunts shush shutdowns shuts
shutting shy shying sian sic sick sicker sid side sided sidle siege sieve sieved sieving sift sifter sifting
sifts sighing sign signal signed signer signet signify signing signings signs silk sill sills silly silo silos
silt silting silts silver sim sims sin since sine sinew sing singing sink sinning sins sip sipped sips sir
sire sired siren sires siring sirs sis sister sit sitar sitars site sited siting sits sitter sitting sittings
situ situate six size sized sjw skate skated skater skates skating skeet skein sketch skew skewed skewer ski
skid skied skiff skill skills skim skin skins skip skirt skis skit skits skull sky skye skyed slab slabs slack
slag slags slain slake slaking slam slams slant slants slap slaps slash slat slate slated slater slates
slating slats slav slave slaved slaver slaving slavs slaw slay slayer slays sleaze sled sleek sleep sleet
sleeting sleeve slew slewed slews slice slicer slick slicker slid slide slider slier sliest slim slime slims
sling slink slip slit slits slitting sliver sloan sloane slob slobber slobs sloe sloes slog slogan slogs sloop
slop slope sloped slopes slops slosh slot sloth slots slotting sloven slowed slowest slowly slows slr slue
slued slug slum slumbers slums slur slut sluts sly slyer smack smart smarts smash smear smelting smile smit
smite smiting smog smoke smoker smote smug smut smuts snack snafus snags snake snap snaps snare snarf snark
snarl snatch snead sneak sneaks sneaky sneer snicker sniff snip snipe snit snits snob snoop snoot snorer snort
snot snots snout snow snowed snowier snows snowy snub snug soak soaked soaks soap soaped soaps soapy soar
soared soars soave sob sober sod soda sodded sodom soft soho soil sol solace sold solder sole soled soli solo
solon solos sols solve solved solver solving some son sons sony soon sooner soot sooth sooty sop sopped soppy
sops sore sorer sores sort sorted sorter sorting sorts sos sosa sot soto sots soul sound soup soupy sour souse
south sow sowed sower sowers soweto sown sows sox soy spa spaced spaces spacey spacier spackle spacy spade
spaded spades spahn spain spake spam spams span spank spans spar spare spared sparer spares spark spars sparse
sparta spas spasm spat spate spates spats spatting spawn spay spayed spays speaker speaks spear speared spears
spec specced specie speck specked specks specs sped speech speeded speeder speeds speedup speedy speer spell
spelled spelt spence spend spends spent sperm spew spewed spews sphinx spica spice spiced spices spicy spied
spiel spieled spies spike spiked spiky spill spilt spinal spine spines spinet spins spinx spiny spire spiro
spit spite spited spiting spits spitting spitz splat splats splay spleen splice spline splint split splurge
spock spoil spoke spoken spook spoon spore spored sport spot spots spotting spout sprain sprat sprats spray
spread spree spreed sprees sprier sprig spring sprint sprints spruce spry spryer spud spume spumed spun spunk
spur spurn spurt spy spying sql squanto squat squats squeak squid squint squirt sro ssa sst stab stable stabs
stacey staci stacie stack stacking stacks stacy stael staff staffs stag stage staged stages stags staid stain
stains stair stairs stake staked stakes staking stale staled staler stales staling stalk stalking stalkings
stalks stall stalling stalls stamen stamp stamps stan stance stand stands stank staph staple star starch stare
stared stares stark starlet starlit starr starry stars started starter startle starts startup startups starve
starved starving stash stat stated stately staten stater states static stating statistic statistical statue
statues stature statures statuses statute statutes staunch stave staved staves staving stay stayed stays std
stead steads steak steaks steal steals stealth steam steams steed steeds steel steep steer steerage stein stem
stems stench stent stents step steps sterling stern sterne sterner steve stew stewart stewed stewing stews
stick sticker sties stiff stiffer stile still stilt stilts stine sting stings stink stint stints stir stirs
stoat stoats stock stoic stoke stoked stoker stokes stol stole stolen stomp stomps stone stoner stony stood
stooge stool stoop stoops stoppage stops store stork storm story stout stove stow stowe stowed stows strafe
strait straits strange strap straps strata stratum stratums straw straws stray strays streak strep strict
string strings strip stripe strips stript strive strived striving strobe strop strops strove strut struts stu
stuart stuarts stub stubs stud studs stump stun stunning stuns stunt stunts sty stye styes style stylus styx
suave suaver sub subs suck sucker suds sue sued suede sues suet suez suffer sui suing suit suite suiting suits
sulk sulking sulla sully sum summers sump sums sun sundown sung sunk sunning suns sup supine supped supplicate
sups surat sure surer surf surfed surfer surfing surge surged surges surging surmount survey survive suse
suspect suv sven svn swab swabs swags swain swan swans swap swaps sward swarm swash swat swatch swath swathe
swaths swats swatting sways swear sweat sweating sweats swede sweep sweet swerve swerved swerves swerving swig
swill swim swine swing swipe swiped swipes swoop swop swops swore swum synch sysop tab tabbing table tabling
tabs tabu tabuing tabus tack tacked tacking tackling tacks tacky taco tact tad tads taejon taft tag tagging
tags tagus tail tailing tails taint taiping take taken taker takes taking takings talc tale tales talked
talker talks tall tallinn tally tallying talon tam tame tamest tami taming tamp tamping tamps tams tan tang
tank tanking tanks tanning tans tao tap tape tapes taping tapir tapping taps tar tara tardy tare taring taro
tarot tarp tarps tarring tarry tars tart tarter tartest tarts taser tasha task tasking tasks tass taste tasted
taster tasters tastes tastier tastiest tasting tasty tat tate tats tatter tatting tatum taunt taut tauter
tautest tax taxi taxiing taxing taxying tba tbs tbsp tea teach teak teal teals team tear teary teas tease teat
teats tech ted tee teed teem teen tees teeter teeth tel tell telling temp temped temps tempt ten tend tenet
tens tense tent tenth tenting tents teri term termed terminable terminal terminals terminated terminates
terminator terming termite tern terr terry terse terser tesla tess tessa testate tested tester testes testing
testis tests testy tet tether tevet tex text texting texts thad thai than thanh thank thanking thant thar that
thatch thaw the thee theft theist then these they thick thicker thigh thin think this tho thor those thou
thrash three thresh throughout throw thru thrush thud thug thur thus thy tia tic tick ticker ticking tics tide
tidy tie tied tier ties tiff tiffed tiffs tike tikes tilde tile tiled tiles tiling till tilling tills tilt
tilting tim timbers time tin tine tinning tins tint tiny tip tipi tipis tips tipsy tire tired tires tiro tit
title tits titter titus tko tlc tnt toad toadied toads toady toast toaster toby tod todd toe toed toes tog
togs tokay toke toked tokens tokes toking tokyo told tolkien toll tolling tom tombed tome tomes toms ton tone
toned toner tones tonne tons tonto tony too took tool toot tooth toots top tops topsy tor torah torahs tore
torn tors torsi torso tort torte tory toss tost tot tote toted totem totes toto tots totter totting tout tow
towed towel towels tower town tows toxin toy toyed toys trace traci track tracking tract tracy trade traded
trail train trait tram tramp trams tran trans trap traps trashed trashes trashy trawl tray trays treas treat
tree treed trees trek trench trent tress trey tribe trick trig trill trim trina trio trip tripe trips trisha
trod tromp tromps tron trons troop trope trot troth trout troy troys truant trudy true trues truest truly
trunk trunking trunks truss trust truth tryst tsar tsars tsp ttys tub tubed tubers tubs tuck tucker tucking
tues tuft tug tugs tull tulle tumblers tums tun tuna tunas tune tunes tuning tunis tuns tupi turd turf turk
turn turning turns tush tusk tut tutus tux tva tvs twa tweak twee tweed tweet twice twill twin twine twist
twit two twos tyke tykes type types typo typos tyre tyree tyro uaw ubs ufa ufo ugh uhf ulster umbel umbels
umber ump umped umps unavailable unbound undo unfaithful unfaithfulness unfold uninstalled uninstaller
uninstalls unit unloaded unloads unlock unloved unpin unread unsafe unsold unsound unstop unto untold unwound
upc upend upi upload uploaded uploads upon upped ups upsetting upstage upstart upstate upsurge ural urdu urea
urey urge urged urges urine uris url urls urn urns usa usable usaf usages usb use used user uses usn uso uss
utc ute utter uzi vain val vale valet valise valuing valve valving van vandal vanning vans vape vapid var vars
vary vase vast vaster vastest vasts vat vats vatting vault vaunt vax vba vcr vdt veal vectoring vectors veep
veer vegan veil vein vela veld venal vend venn venous vent venting venus vera verb verbs verde verdun verge
verged verges verging verier vern verne verse versed verses versing verve very vest vesta vesting vests vet
vetch veto vetoing vets vetted vetting vex vhf vhs via vial vibe vibes vic vice viced vices victories victory
video vie vied vies viewed viewer views vii viii vila vile viler villa vim vine vines vintage viol vip viper
vips vireo virus visa visage vise vised vises visit vista vito viva vixen viz vlad vlf void voided voile vol
vole vols volt vote vow vowel vowels vows vtol wac wack wad wade waded wadi waft wag wage waist wait waite
waiter waive wake waken waking wald wale waling walk walking walks wall walling walt walter waltz wan wane
wank wanking want war ware wares warm wars wart wary was wash washer wasp waste wasted waster wasters wastes
watch water wats watt watts wave wax way weak weal wealth wealthy wean wear weave weaved weaver weaves weaving
web webbed wed wee weed week weep weer wees weest weft wei weigh weill welch weld well welt welter welting wen
wench wend wens went wept were west wests wet wets wetted wetter wetting whack whale wham whams wharf whats
wheal wheat whelk whelp whelps when whet whets whetting whew whey whiff whig whigs while whim whims whine
whiny whip whips whir whirl whirr whirs whisk whist whit white whits whiz whizz who whoa whom whore whores
whose why whys wick wicker wide widen wider wife wifi wig wigs wii wiki wild wilde wile wiled wiles wiley will
willa wills willy wilt wily wimp wimple wimps wimpy win wince winch wind wine wined wines wing wink winning
wino wins wiped wiper wipers wipes wire wired wires wiry wis wise wiser wises wish wisp wisps wispy wist wit
witch with wits witt witting wive wives wiz wizes wkly wmd woe woes wok woke woken woks wolfe wolsey women won
wont woo wood wooded woof wool woos word worded words wordy wore work worked worker works world worm wormed
worms wormy worn worry worsen worsens worst worsted worsts worth wot wound wove woven wow wows wrap wrapt
wrath wreak wren wrench wrens wrest wretch wring wrist writ write wrote wrung wry wto wuhan wuss wwi wyatt wyo
xci xes xhosa xii xiv xix xml xref xvi xxi xxii xxiv xxix xxv yack yacked yacking yak yakking yaks yale yalow
yalta yalu yam yams yank yanking yap yaps yea yeast yeats yell yelp yelps yen yens yep yeps yes yest yet yeti
yew yip yips ymmv yoda yodel yodels yogi yogin yogins yogis yoke yoked yokel yokels yokes yolk yon yore you
young yrs yuan yuck yuk yuks yule yum yup yups yves ywha zagreb zaire zaniest zap zaps zeal zed zeke zen zeno
zens zero zeroed zeroing zest zests zeta zip zips zit zits zoe zone zoo zoom zooms zoos zulu zuni
"""

WORDS = frozenset(_TEXT.split())
log = logging.getLogger(__name__)


def generate(dictionary: Path) -> list[str]:
    """Dictionary words (lower-case letters only) within distance 2 of a command word, not command words."""
    from agents.decision_agent import VOCAB, _distance

    vocab = set(VOCAB)
    words = {w.strip().lower() for w in dictionary.read_text(encoding="utf-8", errors="ignore").splitlines()}
    near = {w for w in words if w.isascii() and w.isalpha() and len(w) >= 3 and w not in vocab
            and any(_distance(w, v, 2) <= 2 for v in vocab if abs(len(v) - len(w)) <= 2)}
    return sorted(near)


def main(argv: list[str]) -> int:
    words = generate(Path(argv[1] if len(argv) > 1 else "/usr/share/dict/words"))
    lines, line = [], ""
    for word in words:
        if len(line) + len(word) + 1 > 110:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    path = Path(__file__)
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition('_TEXT = """\n')
    _, _, tail = rest.partition('"""\n')
    path.write_text(f'{head}_TEXT = """\n' + "\n".join(lines) + f'\n"""\n{tail}', encoding="utf-8")
    log.info("%d words written to %s", len(words), path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv))
